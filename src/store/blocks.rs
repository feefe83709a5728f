//! Block commits (append and reorg, each one transaction) and the reads that seed ingest.

use alloy_primitives::{B256, U256, hex};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, classify};
use crate::model::{Block, BlockSink, ChainLink, CommitBatch};
use crate::types::{from_sql, to_sql};

/// A wei amount as SQLite gets it: an integer when it fits in i64, decimal text otherwise.
#[derive(Serialize)]
#[serde(untagged)]
enum Wei {
    Int(i64),
    Text(String),
}

fn wei(v: U256) -> Wei {
    match i64::try_from(v) {
        Ok(i) => Wei::Int(i),
        Err(_) => Wei::Text(v.to_string()),
    }
}

#[derive(Serialize)]
struct BlockRow {
    h: String,
    n: i64,
    p: String,
    t: i64,
    m: String,
    gu: i64,
    gl: i64,
    bf: Option<Wei>,
    sr: String,
    tr: String,
    rr: String,
    sz: Option<i64>,
    tc: u32,
    ft: u8,
    hv: Option<u8>,
    pid: Option<i64>,
    fa: i64,
}

#[derive(Serialize)]
struct TxRow<'a> {
    b: &'a str,
    i: u32,
    h: String,
    f: String,
    to: Option<String>,
    v: Wei,
    n: i64,
    g: i64,
    gp: Option<Wei>,
    mf: Option<Wei>,
    mp: Option<Wei>,
    #[serde(rename = "in")]
    input: String,
    ty: u8,
}

fn block_rows(store: &Store, blocks: &[Block]) -> Result<(String, String), StoreError> {
    let now = crate::types::now_ms();
    let mut brows = Vec::with_capacity(blocks.len());
    let mut hashes = Vec::with_capacity(blocks.len());
    for b in blocks {
        let h = hex::encode(b.hash);
        brows.push(BlockRow {
            h: h.clone(),
            n: to_sql("block number", b.number)?,
            p: hex::encode(b.parent_hash),
            t: to_sql("timestamp", b.timestamp)?,
            m: hex::encode(b.miner),
            gu: to_sql("gas_used", b.gas_used)?,
            gl: to_sql("gas_limit", b.gas_limit)?,
            bf: b.base_fee_per_gas.map(wei),
            sr: hex::encode(b.state_root),
            tr: hex::encode(b.transactions_root),
            rr: hex::encode(b.receipts_root),
            sz: b.size.map(|s| to_sql("size", s)).transpose()?,
            tc: b.tx_count,
            ft: u8::from(b.full_txs),
            hv: b.hash_verified.map(u8::from),
            pid: store.provider_id(b.provider),
            fa: now,
        });
        hashes.push(h);
    }
    let mut trows = Vec::new();
    for (b, h) in blocks.iter().zip(&hashes) {
        for t in &b.transactions {
            trows.push(TxRow {
                b: h,
                i: t.index,
                h: hex::encode(t.hash),
                f: hex::encode(t.from),
                to: t.to.map(hex::encode),
                v: wei(t.value),
                n: to_sql("nonce", t.nonce)?,
                g: to_sql("gas", t.gas)?,
                gp: t.gas_price.map(wei),
                mf: t.max_fee_per_gas.map(wei),
                mp: t.max_priority_fee_per_gas.map(wei),
                input: hex::encode(&t.input),
                ty: t.tx_type,
            });
        }
    }
    let encode = |e: serde_json::Error| StoreError::Corrupt(format!("encoding rows: {e}"));
    Ok((serde_json::to_string(&brows).map_err(encode)?, serde_json::to_string(&trows).map_err(encode)?))
}

impl Store {
    /// Apply a commit batch in one `BEGIN IMMEDIATE` transaction.
    pub async fn commit_batch(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        let (blocks_json, txs_json) = block_rows(self, &batch.blocks)?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
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
        if !batch.blocks.is_empty() {
            sqlx::query(include_str!("../../sql/store/insert_blocks.sql"))
                .bind(blocks_json)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query(include_str!("../../sql/store/insert_transactions.sql"))
                .bind(txs_json)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
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

    /// Hash of the canonical block at `number`, if stored.
    pub async fn canonical_at(&self, number: u64) -> Result<Option<B256>, StoreError> {
        let row = sqlx::query(include_str!("../../sql/store/canonical_at.sql"))
            .bind(to_sql("block number", number)?)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| hash32(&r.try_get::<Vec<u8>, _>(0)?)).transpose()
    }
}

fn hash32(bytes: &[u8]) -> Result<B256, StoreError> {
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
        self.commit_batch(&batch).await
    }
}
