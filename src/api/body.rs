//! The JSON bodies the API answers with: one `Serialize` struct per shape, so the contract in
//! `openapi.json` is written down as types rather than built by hand in each handler.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Tier;
use crate::fleet::{Breaker, ScoreParts, WindowStats};
use crate::store::{AlertRow, BlockRow, EventRow, ProviderWindow, ReorgRow, RepairRow, RequestRow, TxRow};

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize)]
pub(super) struct ErrorBody<'a> {
    pub(super) error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct ErrorDetail<'a> {
    pub(super) code: &'a str,
    pub(super) message: &'a str,
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub(super) struct Alive {
    pub(super) status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize)]
pub(super) struct Ready {
    pub(super) ready: bool,
    pub(super) stored_head: Option<u64>,
    pub(super) fleet_head: Option<u64>,
    pub(super) lag_blocks: Option<u64>,
    /// The process health, when a live pipeline runs (null under `serve`).
    pub(super) health: Option<Health>,
    pub(super) reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Health {
    pub(super) status: &'static str,
    pub(super) reason: String,
}

/// A block as the API serves it: the stored row, and whether it is final (canonical and at
/// least `confirmations` under the stored tip).
#[derive(Debug, Serialize)]
pub(super) struct Block {
    #[serde(flatten)]
    pub(super) row: BlockRow,
    #[serde(rename = "final")]
    pub(super) is_final: bool,
}

impl Block {
    pub(super) fn new(row: BlockRow, final_height: Option<u64>) -> Self {
        let is_final = row.canonical && final_height.is_some_and(|f| row.number <= f);
        Self { row, is_final }
    }
}

/// `GET /v1/blocks`.
#[derive(Debug, Serialize)]
pub(super) struct BlocksPage {
    pub(super) blocks: Vec<Block>,
    pub(super) next_cursor: Option<String>,
}

/// `GET /v1/blocks/{id}/transactions`.
#[derive(Debug, Serialize)]
pub(super) struct BlockTransactions {
    pub(super) block_number: u64,
    pub(super) block_hash: String,
    pub(super) canonical: bool,
    pub(super) full_transactions: bool,
    pub(super) tx_count: u64,
    pub(super) transactions: Vec<TxRow>,
}

/// `GET /v1/transactions/{hash}`: the canonical copy, and the orphaned blocks that held it too.
#[derive(Debug, Serialize)]
pub(super) struct Transaction {
    #[serde(flatten)]
    pub(super) tx: TxRow,
    pub(super) also_in_blocks: Vec<String>,
}

/// `GET /v1/reorgs`.
#[derive(Debug, Serialize)]
pub(super) struct ReorgsPage {
    pub(super) reorgs: Vec<ReorgRow>,
    pub(super) next_cursor: Option<String>,
}

/// `GET /v1/gaps`.
#[derive(Debug, Serialize)]
pub(super) struct Gaps {
    pub(super) floor: Option<u64>,
    pub(super) tip: Option<u64>,
    pub(super) missing: Vec<GapRange>,
    pub(super) broken_links: Vec<u64>,
    /// Canonical blocks stored without their receipts and logs (receipts indexed).
    pub(super) missing_receipts: Vec<GapRange>,
    pub(super) repairs: Vec<RepairRow>,
}

/// One missing range, inclusive.
#[derive(Debug, Serialize)]
pub(super) struct GapRange {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) blocks: u64,
}

/// `GET /v1/alerts`.
#[derive(Debug, Serialize)]
pub(super) struct AlertsPage {
    pub(super) alerts: Vec<AlertRow>,
    pub(super) next_cursor: Option<String>,
}

/// `GET /v1/events`.
#[derive(Debug, Serialize)]
pub(super) struct EventsPage {
    pub(super) events: Vec<EventRow>,
    pub(super) next_cursor: Option<String>,
}

/// `GET /v1/providers/{name}/requests`.
#[derive(Debug, Serialize)]
pub(super) struct RequestsPage {
    pub(super) provider: String,
    pub(super) requests: Vec<RequestRow>,
    pub(super) next_cursor: Option<String>,
}

/// `POST /v1/sql` (JSON form).
#[derive(Debug, Serialize)]
pub(super) struct SqlAnswer {
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<Vec<serde_json::Value>>,
    pub(super) row_count: usize,
    pub(super) truncated: bool,
    pub(super) elapsed_ms: f64,
}

/// `POST /v1/admin/checkpoint`.
#[derive(Debug, Serialize)]
pub(super) struct Checkpoint {
    pub(super) wal_bytes_before: u64,
    pub(super) wal_bytes_after: u64,
    pub(super) truncated: bool,
}

/// `GET /v1/latency`.
#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub(super) step_ms: i64,
    pub(super) buckets: Vec<i64>,
    pub(super) truncated: bool,
    pub(super) providers: BTreeMap<String, LatencySeries>,
}

/// One provider's series, one value per bucket.
#[derive(Debug, Default, PartialEq, Serialize)]
pub(super) struct LatencySeries {
    pub(super) p50_ms: Vec<Option<f64>>,
    pub(super) p95_ms: Vec<Option<f64>>,
    pub(super) calls: Vec<u64>,
    pub(super) failed: Vec<u64>,
}

/// The fleet-wide part of `GET /v1/providers` (repeated in each `/v1/providers/{name}`).
#[derive(Debug, Clone, Serialize)]
pub(super) struct FleetView {
    pub(super) as_of_ms: i64,
    pub(super) windows_since_ms: BTreeMap<&'static str, i64>,
    pub(super) windows_end_ms: i64,
    pub(super) fleet_head: Option<u64>,
    pub(super) stored_head: Option<u64>,
    pub(super) strategy: Option<&'static str>,
}

/// `GET /v1/providers`.
#[derive(Debug, Serialize)]
pub(super) struct Providers {
    #[serde(flatten)]
    pub(super) fleet: FleetView,
    pub(super) providers: Vec<ProviderDoc>,
}

/// `GET /v1/providers/{name}`.
#[derive(Debug, Serialize)]
pub(super) struct ProviderOne {
    #[serde(flatten)]
    pub(super) provider: ProviderDoc,
    #[serde(flatten)]
    pub(super) fleet: FleetView,
}

/// One provider: the live state (when it is in the running fleet) and the telemetry windows.
#[derive(Debug, Serialize)]
pub(super) struct ProviderDoc {
    pub(super) name: String,
    pub(super) url: String,
    /// healthy | degraded | down | excluded; `retired` (not in the running fleet) or `unknown`
    /// (no running fleet: `serve`).
    pub(super) state: &'static str,
    #[serde(flatten)]
    pub(super) live: Option<LiveProvider>,
    pub(super) windows: BTreeMap<&'static str, ProviderWindow>,
    pub(super) rate_limit_usage: Option<RateUsage>,
    pub(super) capabilities: CapabilitiesDoc,
}

/// What a provider was found to support: the running fleet's view (`null` under `serve`) and
/// every stored finding, with when it was learned and why.
#[derive(Debug, Serialize)]
pub(super) struct CapabilitiesDoc {
    pub(super) live: Option<crate::provider::Capabilities>,
    pub(super) learned: Vec<crate::store::CapabilityRow>,
}

/// What the running fleet says of one provider.
#[derive(Debug, Serialize)]
pub(super) struct LiveProvider {
    pub(super) reason: String,
    pub(super) tier: Tier,
    pub(super) primary: bool,
    pub(super) breaker: Breaker,
    pub(super) head: Option<u64>,
    pub(super) lag_blocks: u64,
    pub(super) lag_seconds: f64,
    /// `polled`, `subscription`, `reconnecting` or `silent`.
    pub(super) heads: &'static str,
    pub(super) poll_interval_ms: u64,
    pub(super) score: f64,
    pub(super) score_parts: ScoreParts,
    pub(super) live_window: WindowStats,
    pub(super) credits_today: u64,
    pub(super) daily_credit_budget: Option<u64>,
    pub(super) credits_fraction: Option<f64>,
    pub(super) rate_limit_rps: Option<f64>,
    pub(super) cooldown_ms: u64,
}

/// Calls per second over the 1m window against the provider's current rate limit.
#[derive(Debug, Serialize)]
pub(super) struct RateUsage {
    pub(super) rps: f64,
    pub(super) limit_rps: f64,
    pub(super) fraction: f64,
}

/// The data of a stream `error` event.
#[derive(Debug, Serialize)]
pub(super) struct StreamError<'a> {
    pub(super) reason: &'a str,
}

/// The data of a stream `reorg` event: drop `drop_from..=drop_to` (listed in `heights` when
/// there are few), the chain continues from the fork point.
#[derive(Debug, Serialize)]
pub(super) struct StreamReorg {
    pub(super) fork_number: u64,
    pub(super) fork_hash: String,
    pub(super) drop_from: u64,
    pub(super) drop_to: u64,
    pub(super) heights: Vec<u64>,
}

/// `GET /v1/logs`.
#[derive(Debug, Serialize)]
pub(super) struct LogsPage {
    pub(super) logs: Vec<crate::store::LogRow>,
    /// Pass as `cursor` for the next page (`BLOCK:LOG_INDEX`); absent on the last.
    pub(super) next_cursor: Option<String>,
}

/// `GET /v1/blocks/{id}/logs`.
#[derive(Debug, Serialize)]
pub(super) struct BlockLogs {
    pub(super) block_number: u64,
    pub(super) block_hash: String,
    pub(super) canonical: bool,
    pub(super) logs: Vec<crate::store::LogRow>,
}

/// `GET /v1/transactions/{hash}/receipt`.
#[derive(Debug, Serialize)]
pub(super) struct Receipt {
    #[serde(flatten)]
    pub(super) receipt: crate::store::ReceiptRow,
    /// Orphaned blocks that also held the transaction.
    pub(super) also_in_blocks: Vec<String>,
}

/// `GET /v1/event-tables`.
#[derive(Debug, Serialize)]
pub(super) struct EventTables {
    pub(super) tables: Vec<crate::store::EventTableRow>,
}

/// `GET /v1/events/{table}`.
#[derive(Debug, Serialize)]
pub(super) struct EventRowsPage {
    pub(super) table: String,
    pub(super) rows: Vec<serde_json::Map<String, serde_json::Value>>,
    pub(super) next_cursor: Option<String>,
}

/// `GET /v1/decode-errors`.
#[derive(Debug, Serialize)]
pub(super) struct DecodeErrorsPage {
    pub(super) errors: Vec<crate::store::DecodeErrorRow>,
    pub(super) next_cursor: Option<String>,
}

/// The data of a log stream `log` event: the log, and whether it left the canonical chain.
#[derive(Debug, Serialize)]
pub(super) struct StreamLog {
    #[serde(flatten)]
    pub(super) log: crate::store::LogRow,
    pub(super) removed: bool,
}
