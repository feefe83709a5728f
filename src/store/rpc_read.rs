//! The read side of `/rpc`: the kept JSON of a block or its receipts by height or hash, where a
//! transaction or receipt is, and whether a range's logs are all stored.
//!
//! The point reads run on the calling thread over a rusqlite connection of its own: a sqlx
//! query hops to its connection's worker thread and back, and at tens of thousands of calls a
//! second those hops were most of the time (BENCHMARKS.md §9). A point read by key takes tens
//! of microseconds, short enough to run on an async worker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use alloy_primitives::B256;
use rusqlite::OptionalExtension;
use sqlx::Row;

use super::{Store, StoreError};
use crate::rawjson::RawJson;
use crate::types::{from_sql, to_sql};

/// Which block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockAt {
    /// The canonical block at this height.
    Number(u64),
    /// The stored block with this hash (canonical or not).
    Hash(B256),
}

/// Which of a block's kept JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Block,
    Receipts,
}

/// A block's kept JSON and what it holds.
#[derive(Debug, Clone)]
pub struct KeptJson {
    pub number: u64,
    pub hash: B256,
    /// The block JSON has full transactions (else hashes).
    pub full_txs: bool,
    pub tx_count: u32,
    pub json: RawJson,
}

thread_local! {
    /// This thread's read-only connection to each file it read (one file in practice).
    static READERS: RefCell<HashMap<PathBuf, rusqlite::Connection>> = RefCell::new(HashMap::new());
}

/// One row of `sql` with `params` on this thread's connection to `store`'s file; `None` when
/// no connection could be opened here (the caller uses the sqlx pool instead).
fn point_read<T>(
    store: &Store,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Option<Result<Option<T>, StoreError>> {
    READERS.with(|r| {
        let mut map = r.borrow_mut();
        if !map.contains_key(store.path()) {
            let conn =
                super::sqlite::open_read_only(store.path(), store.access(), std::time::Duration::from_secs(1), 8192)
                    .ok()?;
            map.insert(store.path().to_path_buf(), conn);
        }
        let conn = map.get(store.path())?;
        let out = conn.prepare_cached(sql).and_then(|mut st| st.query_row(params, row).optional());
        Some(out.map_err(|e| StoreError::Corrupt(format!("read: {e}"))))
    })
}

/// A row's (number, hash, full_txs, tx_count, json) as read by `block_by_*.sql`.
type KeptRow = (i64, Vec<u8>, i64, i64, Option<Vec<u8>>);

fn kept_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeptRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn kept_of(row: KeptRow) -> Result<Option<KeptJson>, StoreError> {
    let (number, hash, full, count, json) = row;
    let Some(bytes) = json else { return Ok(None) };
    Ok(Some(KeptJson {
        number: from_sql("block number", number)?,
        hash: super::blocks::hash32(&hash)?,
        full_txs: full == 1,
        tx_count: u32::try_from(count).map_err(|_| StoreError::Corrupt("negative tx count".into()))?,
        json: RawJson::from_stored(bytes),
    }))
}

impl Store {
    /// The kept JSON of the block `at`; `None` when the block, or that JSON, is not stored.
    pub async fn kept_json(&self, at: BlockAt, what: Kept) -> Result<Option<KeptJson>, StoreError> {
        let which = i64::from(what == Kept::Receipts);
        let fast = match at {
            BlockAt::Number(n) => point_read(
                self,
                include_str!("../../sql/rpc/block_by_number.sql"),
                rusqlite::params![to_sql("block number", n)?, which],
                kept_row,
            ),
            BlockAt::Hash(h) => point_read(
                self,
                include_str!("../../sql/rpc/block_by_hash.sql"),
                rusqlite::params![h.as_slice(), which],
                kept_row,
            ),
        };
        if let Some(row) = fast {
            return row?.map_or(Ok(None), kept_of);
        }
        let q = match at {
            BlockAt::Number(n) => {
                sqlx::query(include_str!("../../sql/rpc/block_by_number.sql")).bind(to_sql("block number", n)?)
            }
            BlockAt::Hash(h) => {
                sqlx::query(include_str!("../../sql/rpc/block_by_hash.sql")).bind(h.as_slice().to_vec())
            }
        };
        let Some(r) = q.bind(which).fetch_optional(&self.reader).await? else { return Ok(None) };
        let Some(bytes) = r.try_get::<Option<Vec<u8>>, _>(4)? else { return Ok(None) };
        Ok(Some(KeptJson {
            number: from_sql("block number", r.try_get(0)?)?,
            hash: super::blocks::hash32(&r.try_get::<Vec<u8>, _>(1)?)?,
            full_txs: r.try_get::<i64, _>(2)? == 1,
            tx_count: u32::try_from(r.try_get::<i64, _>(3)?)
                .map_err(|_| StoreError::Corrupt("negative tx count".into()))?,
            json: RawJson::from_stored(bytes),
        }))
    }

    /// The canonical block hash and index of the transaction `hash` (`Kept::Block`), or of its
    /// receipt (`Kept::Receipts`), if stored.
    pub async fn position_of(&self, hash: B256, what: Kept) -> Result<Option<(B256, u32)>, StoreError> {
        let sql = match what {
            Kept::Block => include_str!("../../sql/rpc/tx_position.sql"),
            Kept::Receipts => include_str!("../../sql/rpc/receipt_position.sql"),
        };
        let fast = point_read(self, sql, [hash.as_slice()], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)));
        if let Some(row) = fast {
            let Some((block, idx)) = row? else { return Ok(None) };
            let idx = u32::try_from(idx).map_err(|_| StoreError::Corrupt("negative index".into()))?;
            return Ok(Some((super::blocks::hash32(&block)?, idx)));
        }
        let Some(r) = sqlx::query(sql).bind(hash.as_slice().to_vec()).fetch_optional(&self.reader).await? else {
            return Ok(None);
        };
        let block = super::blocks::hash32(&r.try_get::<Vec<u8>, _>(0)?)?;
        let idx = u32::try_from(r.try_get::<i64, _>(1)?).map_err(|_| StoreError::Corrupt("negative index".into()))?;
        Ok(Some((block, idx)))
    }

    /// Are every log of every height in `from..=to` stored (canonical blocks with all their
    /// receipts kept)?
    pub async fn logs_cover(&self, from: u64, to: u64) -> Result<bool, StoreError> {
        let sql = include_str!("../../sql/rpc/logs_coverage.sql");
        let (a, b) = (to_sql("from", from)?, to_sql("to", to)?);
        if let Some(n) = point_read(self, sql, [a, b], |r| r.get::<_, i64>(0)) {
            return Ok(from_sql("count", n?.unwrap_or(0))? == to - from + 1);
        }
        let n: i64 = sqlx::query_scalar(include_str!("../../sql/rpc/logs_coverage.sql"))
            .bind(to_sql("from", from)?)
            .bind(to_sql("to", to)?)
            .fetch_one(&self.reader)
            .await?;
        Ok(from_sql("count", n)? == to - from + 1)
    }
}
