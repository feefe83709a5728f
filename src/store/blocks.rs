//! Block commits (append and reorg, each one transaction) and the reads that seed ingest.

use std::collections::HashMap;

use alloy_primitives::B256;
use sqlx::{AssertSqlSafe, Row};

use super::index::IndexSql;
use super::multirow::{self, ROWS_PER_STATEMENT};
use super::{Store, StoreError, classify, params};
use crate::model::{Block, BlockSink, ChainLink, CommitBatch, Log, Receipt, Transaction};
use crate::types::{from_sql, to_sql};

const INSERT_BLOCKS: &str = include_str!("../../sql/store/insert_blocks.sql");
const INSERT_TXS: &str = include_str!("../../sql/store/insert_transactions.sql");
const INSERT_RECEIPTS: &str = include_str!("../../sql/store/insert_receipts.sql");
const INSERT_LOGS: &str = include_str!("../../sql/store/insert_logs.sql");
const INSERT_JSON: &str = include_str!("../../sql/store/insert_block_json.sql");

impl Store {
    /// Apply a commit batch in one `BEGIN IMMEDIATE` transaction.
    pub async fn commit_batch(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        self.apply_batch(&mut tx, batch).await?;
        tx.commit().await.map_err(classify)?;
        self.committed(batch.blocks.len(), batch.reorg.is_some());
        Ok(())
    }

    /// A batch's writes inside the caller's transaction.
    pub(super) async fn apply_batch(
        &self,
        tx: &mut sqlx::SqliteConnection,
        batch: &CommitBatch,
    ) -> Result<(), StoreError> {
        let now = crate::types::now_ms();
        if let Some(r) = &batch.reorg {
            sqlx::query(include_str!("../../sql/store/uncanonicalize_above.sql"))
                .bind(to_sql("fork number", r.fork.number)?)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query(include_str!("../../sql/store/insert_reorg.sql"))
                .bind(r.detected_at_ms)
                .bind(to_sql("reorg depth", r.depth)?)
                .bind(to_sql("fork number", r.fork.number)?)
                .bind(r.fork.hash.as_slice())
                .bind(to_sql("old tip", r.old_tip.number)?)
                .bind(r.old_tip.hash.as_slice())
                .bind(to_sql("new tip", r.new_tip.number)?)
                .bind(r.new_tip.hash.as_slice())
                .bind(self.provider_id(r.provider))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            crate::failpoint::hit("reorg_after_demote");
        }
        insert_blocks(self, tx, &batch.blocks, now).await
    }

    /// Commit a batch that takes ownership (what ingest hands over): during a bulk load an
    /// append goes through the bulk connection on a blocking thread, anything else through
    /// [`Store::commit_batch`].
    pub async fn commit_owned(&self, batch: CommitBatch) -> Result<(), StoreError> {
        if batch.reorg.is_some() || !self.bulk.active() {
            return self.commit_batch(&batch).await;
        }
        let bulk = self.bulk.clone();
        let ids = self.provider_map();
        let index = self.index_sql();
        let now = crate::types::now_ms();
        let (done, batch) = tokio::task::spawn_blocking(move || {
            let done = bulk.commit(&batch.blocks, &ids, now, &index);
            (done, batch)
        })
        .await
        .map_err(|e| StoreError::Bulk(e.to_string()))?;
        if done? {
            self.committed(batch.blocks.len(), false);
            Ok(())
        } else {
            self.commit_batch(&batch).await
        }
    }

    pub(super) fn committed(&self, blocks: usize, reorg: bool) {
        metrics::counter!("blockstreamer_blocks_stored_total").increment(blocks as u64);
        if reorg {
            metrics::counter!("blockstreamer_reorgs_total").increment(1);
        }
        self.notify_change();
    }

    /// The newest `limit` canonical blocks, oldest first.
    pub async fn recent_canonical(&self, limit: u64) -> Result<Vec<ChainLink>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/store/recent_canonical.sql"))
            .bind(to_sql("limit", limit)?)
            .fetch_all(&self.writer)
            .await?;
        links(&rows)
    }

    /// Up to `limit` canonical blocks strictly below `number`, oldest first.
    pub async fn canonical_below(&self, number: u64, limit: u64) -> Result<Vec<ChainLink>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/store/canonical_below.sql"))
            .bind(to_sql("block number", number)?)
            .bind(to_sql("limit", limit)?)
            .fetch_all(&self.writer)
            .await?;
        links(&rows)
    }

    /// The lowest height in `from..=to` with no canonical block, or `None` if all are stored.
    pub async fn first_missing_from(&self, from: u64, to: u64) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(include_str!("../../sql/store/first_missing_from.sql"))
            .bind(to_sql("from", from)?)
            .bind(to_sql("to", to)?)
            .fetch_one(&self.writer)
            .await?;
        match v {
            None => Ok(None),
            Some(n) => {
                let n = from_sql("block number", n)?;
                Ok((n <= to).then_some(n))
            }
        }
    }
}

/// Insert blocks (or re-promote ones already stored by hash) and their transactions.
pub(super) async fn insert_blocks(
    store: &Store,
    tx: &mut sqlx::SqliteConnection,
    blocks: &[Block],
    now: i64,
) -> Result<(), StoreError> {
    let index = store.index_sql();
    let mut ids: HashMap<B256, i64> = HashMap::with_capacity(blocks.len());
    for chunk in blocks.chunks(ROWS_PER_STATEMENT) {
        let sql = multirow::statement(INSERT_BLOCKS, chunk.len());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in chunk {
            q = params::bind(q, params::block(b, store.provider_id(b.provider), now, index.selection)?);
        }
        for row in q.fetch_all(&mut *tx).await.map_err(classify)? {
            ids.insert(hash32(&row.try_get::<Vec<u8>, _>(1)?)?, row.try_get(0)?);
        }
    }
    let mut rows: Vec<(i64, &Transaction)> = Vec::new();
    for b in blocks {
        let id = *ids.get(&b.hash).ok_or_else(|| StoreError::Corrupt(format!("no row id for block {}", b.hash)))?;
        rows.extend(b.transactions.iter().map(|t| (id, t)));
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multirow::statement(INSERT_TXS, chunk.len());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (id, t) in chunk {
            q = params::bind(q, params::transaction(*id, t)?);
        }
        q.execute(&mut *tx).await.map_err(classify)?;
    }
    let with_ids: Vec<(i64, &Block)> = blocks.iter().filter_map(|b| Some((*ids.get(&b.hash)?, b))).collect();
    insert_json(tx, &with_ids).await?;
    insert_receipts(tx, &index, &with_ids).await
}

/// Keep the blocks' JSON (and their receipts' and logs'), where it came with them.
pub(super) async fn insert_json(tx: &mut sqlx::SqliteConnection, blocks: &[(i64, &Block)]) -> Result<(), StoreError> {
    let rows: Vec<(i64, &Block)> = blocks.iter().copied().filter(|(_, b)| b.raw.is_some()).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multirow::statement(INSERT_JSON, chunk.len());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (id, b) in chunk {
            let (block, receipts, logs) = params::json(b);
            q = q.bind(*id).bind(block).bind(receipts).bind(logs);
        }
        q.execute(&mut *tx).await.map_err(classify)?;
    }
    Ok(())
}

/// Insert the receipts and logs of blocks (with their row ids) that carry them.
pub(super) async fn insert_receipts(
    tx: &mut sqlx::SqliteConnection,
    index: &IndexSql,
    blocks: &[(i64, &Block)],
) -> Result<(), StoreError> {
    let mut receipts: Vec<(i64, &Receipt)> = Vec::new();
    let mut logs: Vec<(i64, i64, &Log)> = Vec::new();
    for &(id, b) in blocks {
        let number = to_sql("block number", b.number)?;
        receipts.extend(b.receipts.iter().flat_map(|r| r.receipts.iter()).map(|rc| (id, rc)));
        logs.extend(b.all_logs().map(|l| (id, number, l)));
    }
    for chunk in receipts.chunks(ROWS_PER_STATEMENT) {
        let sql = multirow::statement(INSERT_RECEIPTS, chunk.len());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (id, r) in chunk {
            q = params::bind(q, params::receipt(*id, r)?);
        }
        q.execute(&mut *tx).await.map_err(classify)?;
    }
    for chunk in logs.chunks(ROWS_PER_STATEMENT) {
        let sql = multirow::statement(INSERT_LOGS, chunk.len());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (id, number, l) in chunk {
            q = params::bind(q, params::log(*id, *number, l));
        }
        q.execute(&mut *tx).await.map_err(classify)?;
    }
    let decoded = super::index::decoded_of(blocks.iter().copied())?;
    super::index::insert_decoded_rows(tx, index, decoded.into_iter()).await?;
    Ok(())
}

pub(super) fn hash32(bytes: &[u8]) -> Result<B256, StoreError> {
    B256::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", bytes.len())))
}

/// Rows of (number, hash), newest first → chain links oldest first.
fn links(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<ChainLink>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows.iter().rev() {
        let number = from_sql("block number", r.try_get(0)?)?;
        let hash = hash32(&r.try_get::<Vec<u8>, _>(1)?)?;
        out.push(ChainLink { number, hash });
    }
    Ok(out)
}

impl BlockSink for Store {
    type Error = StoreError;

    async fn commit(&self, batch: CommitBatch) -> Result<(), StoreError> {
        self.commit_owned(batch).await
    }

    fn is_storage_full(e: &StoreError) -> bool {
        matches!(e, StoreError::Full)
    }

    async fn begin_catch_up(&self, blocks: u64, rebuild_min: u64) -> Result<bool, StoreError> {
        if self.bulk_active() {
            return Ok(false);
        }
        let rebuild = self.begin_bulk_load_of(blocks, rebuild_min).await?;
        tracing::info!(blocks, rebuild_indexes = rebuild, "catch-up through the bulk write path");
        Ok(true)
    }

    async fn end_catch_up(&self) -> Result<(), StoreError> {
        let t = std::time::Instant::now();
        self.end_bulk_load().await?;
        let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(ms, "catch-up done: back on the tip path");
        Ok(())
    }
}
