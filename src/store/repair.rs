//! Gap repair in the store: find holes and broken parent links, splice fetched ranges in (one
//! transaction, only when they link on both sides), and log every attempt in `gap_repairs`.

use alloy_primitives::B256;
use sqlx::Row;

use super::blocks::{hash32, insert_blocks};
use super::{Store, StoreError, classify};
use crate::model::{Block, GapScan, RepairOutcome, RepairRecord, RepairSink};
use crate::types::{from_sql, to_sql};

/// One open hole or repair, as `blockstreamer gaps` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepairRow {
    pub id: i64,
    pub detected_at_ms: i64,
    pub attempted_at_ms: i64,
    pub from: i64,
    pub to: i64,
    pub reason: String,
    pub provider: Option<String>,
    pub outcome: String,
    pub blocks: i64,
    pub error: Option<String>,
}

impl Store {
    /// Holes and broken links among the canonical blocks.
    pub async fn scan_gaps(&self) -> Result<GapScan, StoreError> {
        let row = sqlx::query(include_str!("../../sql/gaps/bounds.sql")).fetch_one(&self.reader).await?;
        let (lo, hi): (Option<i64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let (Some(lo), Some(hi)) = (lo, hi) else { return Ok(GapScan::default()) };
        let mut scan = GapScan {
            floor: Some(from_sql("block number", lo)?),
            tip: Some(from_sql("block number", hi)?),
            ..GapScan::default()
        };
        for r in sqlx::query(include_str!("../../sql/gaps/open_gaps.sql")).bind(lo).fetch_all(&self.reader).await? {
            scan.missing.push((from_sql("block number", r.try_get(0)?)?, from_sql("block number", r.try_get(1)?)?));
        }
        for r in sqlx::query(include_str!("../../sql/gaps/broken_links.sql")).bind(lo).fetch_all(&self.reader).await? {
            scan.broken_links.push(from_sql("block number", r.try_get(0)?)?);
        }
        if self.meta("receipts_indexed").await?.is_some_and(|m| m > 0) {
            let heights: Vec<i64> = sqlx::query_scalar(include_str!("../../sql/gaps/missing_receipts.sql"))
                .bind(MISSING_RECEIPTS_LISTED)
                .fetch_all(&self.reader)
                .await?;
            let heights = heights.into_iter().map(|h| from_sql("block number", h)).collect::<Result<Vec<_>, _>>()?;
            scan.missing_receipts = ranges(&heights);
        }
        Ok(scan)
    }

    /// Store receipts for blocks already stored (see [`RepairSink::add_receipts`]).
    pub async fn add_receipts(&self, blocks: &[Block]) -> Result<usize, StoreError> {
        let index = self.index_sql();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        let mut done = Vec::new();
        for b in blocks.iter().filter(|b| b.receipts.is_some() || b.logs.is_some()) {
            let id: Option<i64> = sqlx::query_scalar(include_str!("../../sql/gaps/canonical_id.sql"))
                .bind(b.hash.as_slice())
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
            let Some(id) = id else { continue };
            let verified = b.receipts.as_ref().and_then(|r| r.root_verified).map(i64::from);
            sqlx::query(include_str!("../../sql/gaps/set_receipts.sql"))
                .bind(id)
                .bind(verified)
                .bind(super::params::receipts_state(b))
                .bind(super::params::logs_selection(b, index.selection))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            done.push((id, b));
        }
        let n = done.len();
        // The receipts' JSON too, so /rpc answers these heights from the store.
        super::blocks::insert_json(&mut tx, &done).await?;
        super::blocks::insert_receipts(&mut tx, &index, &done).await?;
        tx.commit().await.map_err(classify)?;
        if n > 0 {
            self.notify_change();
        }
        Ok(n)
    }

    /// Splice `blocks` into the canonical chain (see [`RepairSink::repair`]).
    pub async fn repair_range(&self, blocks: &[Block]) -> Result<RepairOutcome, StoreError> {
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            return Ok(RepairOutcome::Repaired { inserted: 0, replaced: 0 });
        };
        for w in blocks.windows(2) {
            if w[1].number != w[0].number + 1 || w[1].parent_hash != w[0].hash {
                return Err(StoreError::Corrupt(format!("repair range does not link at {}", w[1].number)));
            }
        }
        let now = crate::types::now_ms();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        let at = include_str!("../../sql/gaps/canonical_at.sql");
        if first.number > 0 {
            let below = sqlx::query(at)
                .bind(to_sql("block number", first.number - 1)?)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
            if let Some(r) = below
                && hash32(&r.try_get::<Vec<u8>, _>(0)?)? != first.parent_hash
            {
                return Ok(RepairOutcome::BelowMismatch);
            }
        }
        let above = sqlx::query(at)
            .bind(to_sql("block number", last.number + 1)?)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(r) = above
            && hash32(&r.try_get::<Vec<u8>, _>(1)?)? != last.hash
        {
            return Ok(RepairOutcome::AboveMismatch);
        }
        let stored = sqlx::query(include_str!("../../sql/gaps/canonical_range.sql"))
            .bind(to_sql("block number", first.number)?)
            .bind(to_sql("block number", last.number)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let mut have: std::collections::HashMap<u64, B256> = std::collections::HashMap::new();
        for r in &stored {
            have.insert(from_sql("block number", r.try_get(0)?)?, hash32(&r.try_get::<Vec<u8>, _>(1)?)?);
        }
        let mut todo = Vec::new();
        let mut replaced = 0;
        for b in blocks {
            match have.get(&b.number) {
                Some(h) if *h == b.hash => {}
                Some(_) => {
                    sqlx::query(include_str!("../../sql/gaps/demote_at.sql"))
                        .bind(to_sql("block number", b.number)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    replaced += 1;
                    todo.push(b.clone());
                }
                None => todo.push(b.clone()),
            }
        }
        let inserted = todo.len() - replaced;
        insert_blocks(self, &mut tx, &todo, now).await?;
        tx.commit().await.map_err(classify)?;
        metrics::counter!("blockstreamer_blocks_repaired_total").increment(todo.len() as u64);
        self.notify_change();
        Ok(RepairOutcome::Repaired { inserted, replaced })
    }

    /// Log one repair attempt.
    pub async fn record_repair(&self, r: &RepairRecord) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../sql/gaps/insert_repair.sql"))
            .bind(r.detected_at_ms)
            .bind(r.attempted_at_ms)
            .bind(to_sql("block number", r.from)?)
            .bind(to_sql("block number", r.to)?)
            .bind(r.reason.as_str())
            .bind(r.provider.and_then(|p| self.provider_id(p)))
            .bind(r.outcome.as_str())
            .bind(to_sql("blocks", r.blocks)?)
            .bind(r.error.as_deref())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The latest `limit` repair attempts, newest first.
    pub async fn recent_repairs(&self, limit: u32) -> Result<Vec<RepairRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/gaps/recent_repairs.sql"))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RepairRow {
                    id: r.try_get(0)?,
                    detected_at_ms: r.try_get(1)?,
                    attempted_at_ms: r.try_get(2)?,
                    from: r.try_get(3)?,
                    to: r.try_get(4)?,
                    reason: r.try_get(5)?,
                    provider: r.try_get(6)?,
                    outcome: r.try_get(7)?,
                    blocks: r.try_get(8)?,
                    error: r.try_get(9)?,
                })
            })
            .collect()
    }
}

/// Most heights without receipts one scan lists (the worker takes them a chunk at a time).
const MISSING_RECEIPTS_LISTED: i64 = 10_000;

/// Sorted heights as inclusive ranges.
fn ranges(heights: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &h in heights {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == h => *hi = h,
            _ => out.push((h, h)),
        }
    }
    out
}

impl RepairSink for Store {
    type Error = StoreError;

    async fn scan_gaps(&self) -> Result<GapScan, StoreError> {
        Self::scan_gaps(self).await
    }

    async fn repair(&self, blocks: Vec<Block>) -> Result<RepairOutcome, StoreError> {
        self.repair_range(&blocks).await
    }

    async fn record_repair(&self, r: RepairRecord) -> Result<(), StoreError> {
        Self::record_repair(self, &r).await
    }

    async fn add_receipts(&self, blocks: Vec<Block>) -> Result<usize, StoreError> {
        Self::add_receipts(self, &blocks).await
    }
}
