//! The read side of `/rpc`: the kept JSON of a block or its receipts by height or hash, where a
//! transaction or receipt is, and whether a range's logs are all stored.

use alloy_primitives::B256;
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

impl Store {
    /// The kept JSON of the block `at`; `None` when the block, or that JSON, is not stored.
    pub async fn kept_json(&self, at: BlockAt, what: Kept) -> Result<Option<KeptJson>, StoreError> {
        let which = i64::from(what == Kept::Receipts);
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
        let n: i64 = sqlx::query_scalar(include_str!("../../sql/rpc/logs_coverage.sql"))
            .bind(to_sql("from", from)?)
            .bind(to_sql("to", to)?)
            .fetch_one(&self.reader)
            .await?;
        Ok(from_sql("count", n)? == to - from + 1)
    }
}
