//! The values of one block row and one transaction row, in the column order of
//! `sql/store/insert_blocks.sql` and `insert_transactions.sql`: built once here, bound by both
//! writers (sqlx, and the bulk load's rusqlite connection).

use alloy_primitives::U256;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{StoreError, wei_sql};
use crate::model::{Block, Log, Receipt, Transaction};
use crate::types::to_sql;

/// One bound value; blobs borrow from the block.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// Borrowed text (a decoded value).
    Str(&'a str),
    Blob(&'a [u8]),
}

impl<'a> Param<'a> {
    /// A decoded value, borrowed.
    pub(super) fn of(v: &'a crate::index::SqlValue) -> Self {
        use crate::index::SqlValue;
        match v {
            SqlValue::Null => Self::Null,
            SqlValue::Int(i) => Self::Int(*i),
            SqlValue::Real(r) => Self::Real(*r),
            SqlValue::Text(t) => Self::Str(t),
            SqlValue::Blob(b) => Self::Blob(b),
        }
    }
}

/// Columns bound per block row (`canonical` is a literal in the statement).
pub(super) const BLOCK_PARAMS: usize = 21;
/// Columns bound per transaction row.
pub(super) const TX_PARAMS: usize = 13;
/// Columns bound per receipt row.
pub(super) const RECEIPT_PARAMS: usize = 13;
/// Columns bound per log row.
pub(super) const LOG_PARAMS: usize = 11;

fn wei(v: Option<U256>) -> Param<'static> {
    match v.map(wei_sql) {
        None => Param::Null,
        Some(Ok(i)) => Param::Int(i),
        Some(Err(text)) => Param::Text(text),
    }
}

fn opt_int(v: Option<i64>) -> Param<'static> {
    v.map_or(Param::Null, Param::Int)
}

/// A block's row: `provider` is its `providers.id`, `now` the fetch time (ms), `selection` the
/// `log_selections.id` its logs were kept by.
pub(super) fn block(
    b: &Block,
    provider: Option<i64>,
    now: i64,
    selection: i64,
) -> Result<[Param<'_>; BLOCK_PARAMS], StoreError> {
    Ok([
        Param::Blob(b.hash.as_slice()),
        Param::Int(to_sql("block number", b.number)?),
        Param::Blob(b.parent_hash.as_slice()),
        Param::Int(to_sql("timestamp", b.timestamp)?),
        Param::Blob(b.miner.as_slice()),
        Param::Int(to_sql("gas_used", b.gas_used)?),
        Param::Int(to_sql("gas_limit", b.gas_limit)?),
        wei(b.base_fee_per_gas),
        Param::Blob(b.state_root.as_slice()),
        Param::Blob(b.transactions_root.as_slice()),
        Param::Blob(b.receipts_root.as_slice()),
        opt_int(b.size.map(|s| to_sql("size", s)).transpose()?),
        Param::Int(i64::from(b.tx_count)),
        Param::Int(i64::from(b.full_txs)),
        opt_int(b.hash_verified.map(i64::from)),
        opt_int(provider),
        Param::Int(now),
        b.logs_bloom.as_ref().map_or(Param::Null, |bl| Param::Blob(bl.as_slice())),
        Param::Int(receipts_state(b)),
        opt_int(b.receipts.as_ref().and_then(|r| r.root_verified).map(i64::from)),
        opt_int(logs_selection(b, selection)),
    ])
}

/// What `blocks.receipts` says of this block: 1 when its receipts and logs come with it (a
/// block without transactions has all of none), 2 when the selected logs do (no receipts),
/// else 0.
pub(super) fn receipts_state(b: &Block) -> i64 {
    if b.receipts.is_some() || b.tx_count == 0 {
        1
    } else if b.logs.is_some() {
        2
    } else {
        0
    }
}

/// The selection a block's logs were kept by: every log (1) for a block without transactions,
/// `selection` when it brings logs, none otherwise.
pub(super) fn logs_selection(b: &Block, selection: i64) -> Option<i64> {
    if b.tx_count == 0 {
        Some(1)
    } else if b.receipts.is_some() || b.logs.is_some() {
        Some(selection)
    } else {
        None
    }
}

/// A receipt's row under the block row `block_id`.
pub(super) fn receipt(block_id: i64, r: &Receipt) -> Result<[Param<'_>; RECEIPT_PARAMS], StoreError> {
    Ok([
        Param::Int(block_id),
        Param::Int(i64::from(r.tx_index)),
        Param::Blob(r.tx_hash.as_slice()),
        opt_int(r.status.map(i64::from)),
        r.post_state.as_ref().map_or(Param::Null, |p| Param::Blob(p.as_slice())),
        Param::Int(i64::from(r.tx_type)),
        Param::Int(to_sql("gas_used", r.gas_used)?),
        Param::Int(to_sql("cumulative_gas_used", r.cumulative_gas_used)?),
        wei(r.effective_gas_price),
        r.contract_address.as_ref().map_or(Param::Null, |a| Param::Blob(a.as_slice())),
        opt_int(r.blob_gas_used.map(|g| to_sql("blob_gas_used", g)).transpose()?),
        wei(r.blob_gas_price),
        Param::Int(i64::from(r.log_count)),
    ])
}

/// A log's row under the block row `block_id` (at height `number`).
pub(super) fn log(block_id: i64, number: i64, l: &Log) -> [Param<'_>; LOG_PARAMS] {
    let topic = |i: usize| l.inner.data.topics().get(i).map_or(Param::Null, |t| Param::Blob(t.as_slice()));
    [
        Param::Int(block_id),
        Param::Int(i64::from(l.log_index)),
        Param::Int(number),
        Param::Int(i64::from(l.tx_index)),
        Param::Blob(l.tx_hash.as_slice()),
        Param::Blob(l.inner.address.as_slice()),
        topic(0),
        topic(1),
        topic(2),
        topic(3),
        Param::Blob(l.inner.data.data.as_ref()),
    ]
}

/// A transaction's row under the block row `block_id`.
pub(super) fn transaction(block_id: i64, t: &Transaction) -> Result<[Param<'_>; TX_PARAMS], StoreError> {
    Ok([
        Param::Int(block_id),
        Param::Int(i64::from(t.index)),
        Param::Blob(t.hash.as_slice()),
        Param::Blob(t.from.as_slice()),
        t.to.as_ref().map_or(Param::Null, |a| Param::Blob(a.as_slice())),
        wei(Some(t.value)),
        Param::Int(to_sql("nonce", t.nonce)?),
        Param::Int(to_sql("gas", t.gas)?),
        wei(t.gas_price),
        wei(t.max_fee_per_gas),
        wei(t.max_priority_fee_per_gas),
        Param::Blob(t.input.as_ref()),
        Param::Int(i64::from(t.tx_type)),
    ])
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Bind values to a sqlx query, in order.
pub(super) fn bind<'q>(mut q: SqliteQuery<'q>, params: impl IntoIterator<Item = Param<'q>>) -> SqliteQuery<'q> {
    for p in params {
        q = bind_one(q, p);
    }
    q
}

fn bind_one<'q>(q: SqliteQuery<'q>, p: Param<'q>) -> SqliteQuery<'q> {
    match p {
        Param::Null => q.bind(None::<i64>),
        Param::Int(i) => q.bind(i),
        Param::Real(r) => q.bind(r),
        Param::Text(t) => q.bind(t),
        Param::Str(t) => q.bind(t),
        Param::Blob(b) => q.bind(b),
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null => ValueRef::Null,
            Self::Int(i) => ValueRef::Integer(*i),
            Self::Real(r) => ValueRef::Real(*r),
            Self::Text(t) => ValueRef::Text(t.as_bytes()),
            Self::Str(t) => ValueRef::Text(t.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A block's kept bytes, in the order of `sql/store/insert_block_json.sql` after the block id.
pub(super) type KeptBytes<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<&'a [u8]>);

/// A block's kept JSON: the block's, and its receipts' and logs' when every receipt was fetched.
pub(super) fn json(b: &Block) -> KeptBytes<'_> {
    let receipts = b.receipts.as_ref();
    (
        b.raw.as_ref().map(crate::rawjson::RawJson::as_bytes),
        receipts.and_then(|r| r.raw.as_ref()).map(crate::rawjson::RawJson::as_bytes),
        receipts.and_then(|r| r.raw_logs.as_ref()).map(crate::rawlogs::RawLogs::as_bytes),
    )
}
