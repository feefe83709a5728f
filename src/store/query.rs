//! The read side for the API and the stream: blocks, transactions, reorgs and telemetry pages
//! off the read-only pool, shaped as the JSON users get (hashes as 0x hex, wei as decimal text).

use alloy_primitives::hex;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Row};

use super::{Store, StoreError};
use crate::types::{from_sql, to_sql};

/// A stored block as the API serves it. Wei amounts are decimal strings (they pass 2^53).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockRow {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
    pub timestamp: u64,
    pub miner: String,
    pub gas_used: u64,
    pub gas_limit: u64,
    pub base_fee_per_gas: Option<String>,
    pub state_root: String,
    pub transactions_root: String,
    pub receipts_root: String,
    pub size: Option<u64>,
    pub tx_count: u64,
    /// Whether the block's transactions were stored with it.
    pub full_transactions: bool,
    /// False once a reorg replaced it (still reachable by hash).
    pub canonical: bool,
    /// `true`: keccak(header) = hash; `null`: the header could not be checked.
    pub hash_verified: Option<bool>,
    pub provider: Option<String>,
    pub fetched_at_ms: i64,
}

/// A stored transaction as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxRow {
    pub hash: String,
    pub block_number: u64,
    pub block_hash: String,
    /// Whether its block is canonical.
    pub canonical: bool,
    pub transaction_index: u64,
    pub from: String,
    pub to: Option<String>,
    pub value: String,
    pub nonce: u64,
    pub gas: u64,
    pub gas_price: Option<String>,
    pub max_fee_per_gas: Option<String>,
    pub max_priority_fee_per_gas: Option<String>,
    pub input: String,
    #[serde(rename = "type")]
    pub tx_type: u8,
}

/// One recorded reorg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReorgRow {
    pub id: i64,
    pub detected_at_ms: i64,
    pub depth: u64,
    pub fork_number: u64,
    pub fork_hash: String,
    pub old_tip_number: u64,
    pub old_tip_hash: String,
    pub new_tip_number: u64,
    pub new_tip_hash: String,
    pub provider: Option<String>,
}

/// One routing decision (a `provider_events` row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub ts_ms: i64,
    pub provider: String,
    pub kind: String,
    pub reason: String,
}

/// A branch a reorg dropped: its fork point (height, hash) and its blocks, newest first.
#[derive(Debug, Clone)]
pub struct DroppedBranch {
    pub fork: (u64, [u8; 32]),
    pub blocks: Vec<BlockRow>,
}

/// One call for the latency series: provider, start (ms), latency (µs), outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPoint {
    pub provider: String,
    pub ts_ms: i64,
    pub latency_us: i64,
    pub ok: bool,
}

/// One raw telemetry row (one JSON-RPC attempt).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRow {
    pub id: i64,
    pub ts_ms: i64,
    pub method: String,
    pub block_number: Option<i64>,
    pub latency_ms: f64,
    pub outcome: String,
    pub http_status: Option<i64>,
    pub rpc_code: Option<i64>,
    pub bytes: Option<i64>,
    pub head_reported: Option<i64>,
    pub attempt: i64,
    pub hedged: bool,
    pub batch_size: i64,
    pub credits: i64,
    pub error: Option<String>,
}

/// A provider's telemetry over one window, by the rules of the `provider_health_*` views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderWindow {
    /// Whose window it is (the API files the window under the provider instead).
    #[serde(skip_serializing)]
    pub provider: String,
    /// Calls in the window, cancelled ones (lost hedges, shutdown) left out.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub throttled: u64,
    /// errors / (ok + errors).
    pub error_rate: f64,
    /// throttled / requests.
    pub throttle_rate: f64,
    pub credits: u64,
    /// Latency of successful calls, nearest rank.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The stored tip: number, hash and when it was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredTip {
    pub number: u64,
    pub hash: [u8; 32],
    pub fetched_at_ms: i64,
}

fn hex_blob<I: ColumnIndex<SqliteRow>>(r: &SqliteRow, i: I) -> Result<String, StoreError> {
    let b: Vec<u8> = r.try_get(i)?;
    Ok(hex::encode_prefixed(b))
}

fn hex_blob_opt<I: ColumnIndex<SqliteRow>>(r: &SqliteRow, i: I) -> Result<Option<String>, StoreError> {
    let b: Option<Vec<u8>> = r.try_get(i)?;
    Ok(b.map(hex::encode_prefixed))
}

fn uint<I: ColumnIndex<SqliteRow>>(r: &SqliteRow, i: I, what: &'static str) -> Result<u64, StoreError> {
    Ok(from_sql(what, r.try_get(i)?)?)
}

fn flag(r: &SqliteRow, name: &str) -> Result<bool, StoreError> {
    Ok(r.try_get::<i64, _>(name)? == 1)
}

fn hash32(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    super::blocks::hash32(bytes).map(|h| h.0)
}

/// A row of the `api_blocks` view (migrations/V7__api_rows.sql).
fn block_row(r: &SqliteRow) -> Result<BlockRow, StoreError> {
    let size: Option<i64> = r.try_get("size")?;
    let verified: Option<i64> = r.try_get("hash_verified")?;
    Ok(BlockRow {
        number: uint(r, "number", "block number")?,
        hash: hex_blob(r, "hash")?,
        parent_hash: hex_blob(r, "parent_hash")?,
        timestamp: uint(r, "timestamp", "timestamp")?,
        miner: hex_blob(r, "miner")?,
        gas_used: uint(r, "gas_used", "gas_used")?,
        gas_limit: uint(r, "gas_limit", "gas_limit")?,
        base_fee_per_gas: r.try_get("base_fee_per_gas")?,
        state_root: hex_blob(r, "state_root")?,
        transactions_root: hex_blob(r, "transactions_root")?,
        receipts_root: hex_blob(r, "receipts_root")?,
        size: size.map(|s| from_sql("size", s)).transpose()?,
        tx_count: uint(r, "tx_count", "tx_count")?,
        full_transactions: flag(r, "full_txs")?,
        canonical: flag(r, "canonical")?,
        hash_verified: verified.map(|v| v == 1),
        provider: r.try_get("provider")?,
        fetched_at_ms: r.try_get("fetched_at_ms")?,
    })
}

/// A row of the `api_transactions` view (migrations/V7__api_rows.sql).
fn tx_row(r: &SqliteRow) -> Result<TxRow, StoreError> {
    let tx_type: i64 = r.try_get("tx_type")?;
    Ok(TxRow {
        block_number: uint(r, "block_number", "block number")?,
        block_hash: hex_blob(r, "block_hash")?,
        canonical: flag(r, "canonical")?,
        transaction_index: uint(r, "transaction_index", "transaction index")?,
        hash: hex_blob(r, "hash")?,
        from: hex_blob(r, "from_address")?,
        to: hex_blob_opt(r, "to_address")?,
        value: r.try_get("value")?,
        nonce: uint(r, "nonce", "nonce")?,
        gas: uint(r, "gas", "gas")?,
        gas_price: r.try_get("gas_price")?,
        max_fee_per_gas: r.try_get("max_fee_per_gas")?,
        max_priority_fee_per_gas: r.try_get("max_priority_fee_per_gas")?,
        input: hex_blob(r, "input")?,
        tx_type: u8::try_from(tx_type).map_err(|_| StoreError::Corrupt(format!("tx type {tx_type}")))?,
    })
}

/// Microseconds → milliseconds (latencies are far below 2^53 µs: the cast is exact).
pub fn us_to_ms(us: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64 / 1000.0;
    v
}

impl Store {
    /// The newest canonical block.
    pub async fn latest_block(&self) -> Result<Option<BlockRow>, StoreError> {
        let r = sqlx::query(include_str!("../../sql/api/block_latest.sql")).fetch_optional(&self.reader).await?;
        r.as_ref().map(block_row).transpose()
    }

    /// The canonical block at `number`.
    pub async fn block_by_number(&self, number: u64) -> Result<Option<BlockRow>, StoreError> {
        let r = sqlx::query(include_str!("../../sql/api/block_by_number.sql"))
            .bind(to_sql("block number", number)?)
            .fetch_optional(&self.reader)
            .await?;
        r.as_ref().map(block_row).transpose()
    }

    /// Any stored block by hash, canonical or not.
    pub async fn block_by_hash(&self, hash: &[u8; 32]) -> Result<Option<BlockRow>, StoreError> {
        let r = sqlx::query(include_str!("../../sql/api/block_by_hash.sql"))
            .bind(hash.as_slice())
            .fetch_optional(&self.reader)
            .await?;
        r.as_ref().map(block_row).transpose()
    }

    /// Canonical blocks in `from..=to`, at most `limit`, ascending or descending.
    pub async fn blocks_range(&self, from: u64, to: u64, limit: u32, desc: bool) -> Result<Vec<BlockRow>, StoreError> {
        let sql = if desc {
            include_str!("../../sql/api/blocks_desc.sql")
        } else {
            include_str!("../../sql/api/blocks_asc.sql")
        };
        let rows = sqlx::query(sql)
            .bind(to_sql("block number", from)?)
            .bind(to_sql("block number", to)?)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(block_row).collect()
    }

    /// The stored transactions of the block with `hash`, in order.
    pub async fn block_transactions(&self, hash: &[u8; 32]) -> Result<Vec<TxRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/block_transactions.sql"))
            .bind(hash.as_slice())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(tx_row).collect()
    }

    /// Every stored copy of a transaction, the canonical one first.
    pub async fn transaction_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<TxRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/transaction_by_hash.sql"))
            .bind(hash.as_slice())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(tx_row).collect()
    }

    /// Reorgs newest first, with id below `before` (pagination), at most `limit`.
    pub async fn reorgs_page(&self, before: i64, limit: u32) -> Result<Vec<ReorgRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/reorgs_page.sql"))
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReorgRow {
                    id: r.try_get(0)?,
                    detected_at_ms: r.try_get(1)?,
                    depth: uint(r, 2, "depth")?,
                    fork_number: uint(r, 3, "fork number")?,
                    fork_hash: hex_blob(r, 4)?,
                    old_tip_number: uint(r, 5, "old tip")?,
                    old_tip_hash: hex_blob(r, 6)?,
                    new_tip_number: uint(r, 7, "new tip")?,
                    new_tip_hash: hex_blob(r, 8)?,
                    provider: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Routing decisions newest first, id below `before`, at most `limit`.
    pub async fn events_page(&self, before: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/events_page.sql"))
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    id: r.try_get(0)?,
                    ts_ms: r.try_get(1)?,
                    provider: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    reason: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Calls since `since_ms`, oldest first, at most `limit` (the latency plot).
    pub async fn calls_since(&self, since_ms: i64, limit: u32) -> Result<Vec<CallPoint>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/latency_series.sql"))
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let outcome: String = r.try_get(3)?;
                Ok(CallPoint {
                    provider: r.try_get(0)?,
                    ts_ms: r.try_get(1)?,
                    latency_us: r.try_get(2)?,
                    ok: outcome == "ok",
                })
            })
            .collect()
    }

    /// One provider's raw telemetry, newest first, id below `before`, at most `limit`.
    pub async fn provider_requests(&self, name: &str, before: i64, limit: u32) -> Result<Vec<RequestRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/provider_requests_page.sql"))
            .bind(name)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RequestRow {
                    id: r.try_get(0)?,
                    ts_ms: r.try_get(1)?,
                    method: r.try_get(2)?,
                    block_number: r.try_get(3)?,
                    latency_ms: us_to_ms(r.try_get(4)?),
                    outcome: r.try_get(5)?,
                    http_status: r.try_get(6)?,
                    rpc_code: r.try_get(7)?,
                    bytes: r.try_get(8)?,
                    head_reported: r.try_get(9)?,
                    attempt: r.try_get(10)?,
                    hedged: r.try_get::<i64, _>(11)? == 1,
                    batch_size: r.try_get(12)?,
                    credits: r.try_get(13)?,
                    error: r.try_get(14)?,
                })
            })
            .collect()
    }

    /// Per-provider telemetry over `[since_ms, until_ms)`, every registered provider listed.
    pub async fn provider_windows(&self, since_ms: i64, until_ms: i64) -> Result<Vec<ProviderWindow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/provider_window.sql"))
            .bind(since_ms)
            .bind(until_ms)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let requests = uint(r, 1, "requests")?;
                let ok = uint(r, 2, "ok")?;
                let errors = uint(r, 3, "errors")?;
                let throttled = uint(r, 4, "throttled")?;
                let p =
                    |i: usize| -> Result<Option<f64>, StoreError> { Ok(r.try_get::<Option<i64>, _>(i)?.map(us_to_ms)) };
                Ok(ProviderWindow {
                    provider: r.try_get(0)?,
                    requests,
                    ok,
                    errors,
                    throttled,
                    error_rate: ratio(errors, ok + errors),
                    throttle_rate: ratio(throttled, requests),
                    credits: uint(r, 5, "credits")?,
                    p50_ms: p(6)?,
                    p95_ms: p(7)?,
                    p99_ms: p(8)?,
                })
            })
            .collect()
    }

    /// Every provider this file has seen: (name, redacted url), in registration order.
    pub async fn provider_names(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/provider_names.sql")).fetch_all(&self.reader).await?;
        rows.iter().map(|r| Ok((r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// The newest canonical block's number, hash and commit time.
    pub async fn stored_tip(&self) -> Result<Option<StoredTip>, StoreError> {
        let Some(r) = sqlx::query(include_str!("../../sql/api/stored_tip.sql")).fetch_optional(&self.reader).await?
        else {
            return Ok(None);
        };
        Ok(Some(StoredTip {
            number: uint(&r, 0, "block number")?,
            hash: hash32(&r.try_get::<Vec<u8>, _>(1)?)?,
            fetched_at_ms: r.try_get(2)?,
        }))
    }

    /// How deep a block must be under the stored tip to be final: the `confirmations` of the
    /// process that writes the file (recorded in `meta` at its start; 0 when never recorded).
    pub async fn confirmations(&self) -> Result<u64, StoreError> {
        Ok(from_sql("confirmations", self.meta("confirmations").await?.unwrap_or(0))?)
    }

    /// The highest final height: the stored canonical tip minus [`confirmations`](Self::confirmations).
    /// None while nothing stored is that deep.
    pub async fn final_height(&self) -> Result<Option<u64>, StoreError> {
        let confirmations = self.confirmations().await?;
        Ok(self.stored_tip().await?.and_then(|t| t.number.checked_sub(confirmations)))
    }

    /// The canonical hash at `number`, if stored.
    pub async fn canonical_hash_at(&self, number: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let h: Option<Vec<u8>> = sqlx::query_scalar(include_str!("../../sql/api/canonical_hash_at.sql"))
            .bind(to_sql("block number", number)?)
            .fetch_optional(&self.reader)
            .await?;
        h.as_deref().map(hash32).transpose()
    }

    /// The blocks a reorg dropped from the branch ending at the stored block `hash` (walked by
    /// parent hash, newest first, down to its fork point with the canonical chain), and that
    /// fork point. None when the block is not stored or its branch reaches no canonical block.
    pub async fn dropped_branch(&self, hash: &[u8; 32]) -> Result<Option<DroppedBranch>, StoreError> {
        let Some(fork) = self.fork_point(hash).await? else { return Ok(None) };
        let mut blocks = Vec::new();
        let mut at = *hash;
        while let Some(b) = self.block_by_hash(&at).await? {
            if b.number <= fork.0 || b.canonical {
                break;
            }
            at = b
                .parent_hash
                .parse::<alloy_primitives::B256>()
                .map_err(|_| StoreError::Corrupt("parent hash".into()))?
                .0;
            blocks.push(b);
        }
        Ok(Some(DroppedBranch { fork, blocks }))
    }

    /// Where the stored block `hash` left the canonical chain: its newest canonical ancestor
    /// (the block itself when it is canonical). None when it is not stored or its branch does
    /// not reach a canonical block in this file.
    pub async fn fork_point(&self, hash: &[u8; 32]) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        let Some(r) = sqlx::query(include_str!("../../sql/api/fork_point.sql"))
            .bind(hash.as_slice())
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((uint(&r, 0, "block number")?, hash32(&r.try_get::<Vec<u8>, _>(1)?)?)))
    }
}

/// `num / den`, 0 when `den` is 0.
pub fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let r = num as f64 / den as f64;
    r
}
