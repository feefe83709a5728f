//! The read side of `/rpc`: the kept JSON of a block or its receipts by height or hash, a
//! block's logs, where a transaction or receipt is, and whether a range's logs are all stored.
//!
//! The point reads run on the calling thread over a rusqlite connection of its own: a sqlx
//! query hops to its connection's worker thread and back, and at tens of thousands of calls a
//! second those hops were most of the time (BENCHMARKS.md §9). A point read by key takes tens
//! of microseconds, short enough to run on an async worker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::B256;
use rusqlite::OptionalExtension;

use super::sqlite::classify_rusqlite;
use super::{Store, StoreError};
use crate::rawjson::RawJson;
use crate::rawlogs::{RawLogs, Unpacked};
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

/// A block's kept logs, for `eth_getLogs`.
#[derive(Debug)]
pub struct KeptLogs {
    pub number: u64,
    pub hash: B256,
    /// Every log of the block; `None` when its receipts are not kept.
    pub logs: Option<Unpacked>,
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

/// How much of the file a point-read connection maps instead of reading into its page cache
/// (one copy fewer per page read).
const MMAP_BYTES: i64 = 1 << 30;

/// One row of `sql` with `params`, on this thread's connection to `store`'s file (opened on
/// first use, as the store's own readers are: same file, same access).
fn point_read<T>(
    store: &Store,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    READERS.with(|r| {
        let mut map = r.borrow_mut();
        let conn = match map.entry(store.path().to_path_buf()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let c = super::sqlite::open_read_only(store.path(), store.access(), Duration::from_secs(1), 8192)
                    .map_err(classify_rusqlite)?;
                c.pragma_update(None, "mmap_size", MMAP_BYTES).map_err(classify_rusqlite)?;
                e.insert(c)
            }
        };
        conn.prepare_cached(sql).and_then(|mut st| st.query_row(params, row).optional()).map_err(classify_rusqlite)
    })
}

impl Store {
    /// The kept JSON of the block `at`; `None` when the block, or that JSON, is not stored.
    pub fn kept_json(&self, at: BlockAt, what: Kept) -> Result<Option<KeptJson>, StoreError> {
        let which = i64::from(what == Kept::Receipts);
        let row = |r: &rusqlite::Row<'_>| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get(4)?))
        };
        let found = match at {
            BlockAt::Number(n) => point_read(
                self,
                include_str!("../../sql/rpc/block_by_number.sql"),
                rusqlite::params![to_sql("block number", n)?, which],
                row,
            )?,
            BlockAt::Hash(h) => point_read(
                self,
                include_str!("../../sql/rpc/block_by_hash.sql"),
                rusqlite::params![h.as_slice(), which],
                row,
            )?,
        };
        let Some((number, hash, full, count, Some(bytes))) = found else { return Ok(None) };
        Ok(Some(KeptJson {
            number: from_sql("block number", number)?,
            hash: super::blocks::hash32(&hash)?,
            full_txs: full == 1,
            tx_count: u32::try_from(count).map_err(|_| StoreError::Corrupt("negative tx count".into()))?,
            json: RawJson::from_stored(bytes),
        }))
    }

    /// The logs of the block `at`; `None` when the block, or its JSON, is not stored.
    pub fn kept_logs(&self, at: BlockAt) -> Result<Option<KeptLogs>, StoreError> {
        type Row = (i64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
        let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Row> { Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)) };
        let found = match at {
            BlockAt::Number(n) => point_read(
                self,
                include_str!("../../sql/rpc/block_logs_by_number.sql"),
                [to_sql("block number", n)?],
                row,
            )?,
            BlockAt::Hash(h) => {
                point_read(self, include_str!("../../sql/rpc/block_logs_by_hash.sql"), [h.as_slice()], row)?
            }
        };
        let Some((number, hash, packed, receipts)) = found else { return Ok(None) };
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("block {number}: {e}"));
        let logs = match (packed, receipts) {
            (Some(p), _) => Some(RawLogs::from_stored(p).unpack().map_err(|e| corrupt(&e))?),
            // Kept before the logs were (V15): reach them through the receipts.
            (None, Some(r)) => {
                let text = RawJson::from_stored(r).text().map_err(|e| corrupt(&e))?;
                Some(Unpacked::from_receipts(&text).map_err(|e| corrupt(&e))?)
            }
            (None, None) => None,
        };
        Ok(Some(KeptLogs { number: from_sql("block number", number)?, hash: super::blocks::hash32(&hash)?, logs }))
    }

    /// The canonical block hash and index of the transaction `hash` (`Kept::Block`), or of its
    /// receipt (`Kept::Receipts`), if stored.
    pub fn position_of(&self, hash: B256, what: Kept) -> Result<Option<(B256, u32)>, StoreError> {
        let sql = match what {
            Kept::Block => include_str!("../../sql/rpc/tx_position.sql"),
            Kept::Receipts => include_str!("../../sql/rpc/receipt_position.sql"),
        };
        let row = |r: &rusqlite::Row<'_>| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?));
        let Some((block, idx)) = point_read(self, sql, [hash.as_slice()], row)? else { return Ok(None) };
        let idx = u32::try_from(idx).map_err(|_| StoreError::Corrupt("negative index".into()))?;
        Ok(Some((super::blocks::hash32(&block)?, idx)))
    }

    /// Are every log of every height in `from..=to` stored (canonical blocks with all their
    /// receipts kept)?
    pub fn logs_cover(&self, from: u64, to: u64) -> Result<bool, StoreError> {
        let (a, b) = (to_sql("from", from)?, to_sql("to", to)?);
        let n = point_read(self, include_str!("../../sql/rpc/logs_coverage.sql"), [a, b], |r| r.get::<_, i64>(0))?;
        Ok(from_sql("count", n.unwrap_or(0))? == to - from + 1)
    }
}
