//! Configuration: the TOML file, `--rpc` URLs and `${VAR}` interpolation, validated up front.

use std::path::{Path, PathBuf};

mod check;
pub use check::ResolvedProvider;
mod heads;
pub use heads::{HeadPoll, HeadsConfig};
mod rpc;
pub use rpc::{RpcConfig, RpcHead, RpcKey};
mod sink;
pub use sink::{NatsSecrets, NatsSinkConfig, PublishWhen, SinkConfig, SinkKind};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration problem, naming the field at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: environment variable {var} is not set")]
    MissingEnv { field: String, var: String },
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// Primary providers are preferred; fallbacks are used when no primary can serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Primary,
    Fallback,
}

/// How the fleet orders eligible providers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Highest score first, primaries before fallbacks, with a sticky primary.
    #[default]
    Best,
    /// Lowest price per call first (free tiers first), then score; budget pace respected.
    Cheapest,
    /// Rotate through eligible providers.
    RoundRobin,
    /// Configuration order, primaries before fallbacks.
    Priority,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Cheapest => "cheapest",
            Self::RoundRobin => "round-robin",
            Self::Priority => "priority",
        }
    }
}

/// The `[routing]` table: selection, breakers, cooldowns, hedging. These defaults are the
/// fleet's defaults too (`FleetOptions::default` reads them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub strategy: Strategy,
    /// Hedge single-block tip fetches after the primary's p95.
    pub hedge: bool,
    pub hedge_max_ms: u64,
    /// Blocks behind the fleet head before a provider is excluded (kept as a last resort).
    pub max_lag_blocks: u64,
    /// Consecutive failures that open a provider's breaker.
    pub breaker_failures: u32,
    /// Error rate over the window (after `breaker_min_samples`) that opens the breaker.
    pub breaker_error_rate: f64,
    pub breaker_min_samples: usize,
    /// Open breaker → one probe after this long.
    pub breaker_cooldown_ms: u64,
    /// Rolling window of latency and error figures.
    pub window_secs: u64,
    /// Cooldown after a 429 without `Retry-After`.
    pub throttle_cooldown_ms: u64,
    /// Clamp for any `Retry-After`.
    pub max_retry_after_ms: u64,
    /// A single request gives up after this long (ingest then retries the step).
    pub request_deadline_ms: u64,
    /// The sticky primary changes at most this often (unless excluded).
    pub switch_min_interval_ms: u64,
    /// How long a forged or inconsistent block weighs on a provider's score, fading linearly.
    pub integrity_memory_secs: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Best,
            hedge: true,
            hedge_max_ms: 1000,
            max_lag_blocks: 3,
            breaker_failures: 5,
            breaker_error_rate: 0.5,
            breaker_min_samples: 20,
            breaker_cooldown_ms: 5000,
            window_secs: 60,
            throttle_cooldown_ms: 10_000,
            max_retry_after_ms: 300_000,
            request_deadline_ms: 20_000,
            switch_min_interval_ms: 10_000,
            integrity_memory_secs: 3_600,
        }
    }
}

/// One `[[providers]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: Option<String>,
    /// May contain `${VAR}`; the expanded URL is secret and never logged.
    pub url: String,
    /// A WebSocket endpoint to subscribe to `newHeads` on (may contain `${VAR}`); a ws:// `url`
    /// needs none. Calls still go to `url`.
    pub ws_url: Option<String>,
    /// This provider's head-poll interval, overriding the rules in `[heads]`.
    pub poll_interval_ms: Option<u64>,
    #[serde(default)]
    pub tier: Tier,
    /// Token bucket rate (requests per second) and its burst.
    pub max_rps: Option<f64>,
    pub burst: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub timeout_ms: Option<u64>,
    /// Multiplies the score (> 1 prefers this provider).
    pub weight: Option<f64>,
    pub daily_credit_budget: Option<u64>,
    pub monthly_credit_budget: Option<u64>,
    /// USD per million credits; 0 (the default) for a free tier or your own node.
    pub price_per_million_credits: Option<f64>,
    /// Credits per method, overriding the default table (Alchemy-style compute units).
    #[serde(default)]
    pub credits: std::collections::BTreeMap<String, u32>,
    pub chain_id: Option<u64>,
}

/// Retention of telemetry: raw `provider_requests` rows are kept `raw_days`; the minute
/// rollups, hourly error classes, block sightings and provider events `rollup_days`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub raw_days: u32,
    pub rollup_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { raw_days: 7, rollup_days: 90 }
    }
}

/// The `[api]` table: the HTTP server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API while following (`run`, `demo`).
    pub enabled: bool,
    /// Listen address; `--listen` overrides it. A non-loopback address needs `api_key`.
    pub listen: String,
    /// Bearer key for `/v1/sql` and `/v1/admin/*` (may be `${VAR}`). Without it, SQL is open on
    /// loopback and admin routes are refused.
    pub api_key: Option<String>,
    /// Per-peer-IP token bucket.
    pub rate_limit_rps: f64,
    pub rate_limit_burst: u32,
    /// Apply the rate limit to loopback peers too (off: local tools and benchmarks are not limited).
    pub rate_limit_loopback: bool,
    /// Request bodies above this are refused with 413.
    pub max_body_bytes: usize,
    /// Whole-request deadline for the JSON routes (the stream is exempt).
    pub request_timeout_ms: u64,
    /// A connection that has not sent a complete request header within this is closed.
    pub header_read_timeout_ms: u64,
    pub max_connections: usize,
    /// Connections one peer IP may hold at once (loopback included); past it a new connection
    /// is answered 429 and closed.
    pub max_connections_per_ip: usize,
    /// Host names served besides localhost and the bound address (`Host` header check against
    /// DNS rebinding); `"*"` serves any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example`) allowed to make cross-origin browser requests; `"*"` any.
    pub cors_origins: Vec<String>,
    /// `/readyz` is ready while the stored head is within this many blocks of the fleet head.
    pub ready_max_lag_blocks: u64,
    pub sql_timeout_ms: u64,
    pub sql_max_rows: usize,
    pub sql_max_bytes: usize,
    pub sql_concurrency: usize,
    /// A live stream client this many blocks behind the stored head is disconnected.
    pub stream_max_lag_blocks: u64,
    /// A live-stream or `/v1/export` client that reads nothing for this long (its buffers full)
    /// is disconnected, freeing what it held.
    pub stream_send_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            api_key: None,
            rate_limit_rps: 50.0,
            rate_limit_burst: 100,
            rate_limit_loopback: false,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_ip: 256,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            ready_max_lag_blocks: 5,
            sql_timeout_ms: 1000,
            sql_max_rows: 1000,
            sql_max_bytes: 4 << 20,
            sql_concurrency: 2,
            stream_max_lag_blocks: 1024,
            stream_send_timeout_ms: 10_000,
        }
    }
}

/// The `[alerts]` table: the built-in evaluator's thresholds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// How often the rules are evaluated.
    pub interval_ms: u64,
    /// The window for the error-rate and latency rules.
    pub window_secs: u64,
    /// error rate above this (after `min_samples` calls in the window) opens `error_rate`.
    pub error_rate: f64,
    pub min_samples: u64,
    /// p95 latency of successful calls above this opens `p95_latency`.
    pub p95_ms: f64,
    /// A provider behind the fleet head by more than this many blocks (`lag_blocks`) or
    /// seconds (`lag_seconds`).
    pub lag_blocks: u64,
    pub lag_secs: f64,
    /// An open gap seen for longer than this.
    pub gap_secs: u64,
    /// Credits spent today above this share of the daily budget.
    pub credits_fraction: f64,
    /// No new stored block for this many block times opens `no_new_block`.
    pub stale_block_times: f64,
    /// The chain's block time; unset = measured from the stored timestamps.
    pub block_time_ms: Option<u64>,
    /// A broker sink this many stored blocks behind (the broker down or slow) opens
    /// `sink_backlog`.
    pub sink_backlog_blocks: u64,
    /// POST each opened and resolved alert as JSON here (may be `${VAR}`).
    pub webhook_url: Option<String>,
    pub webhook_retries: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 5000,
            window_secs: 300,
            error_rate: 0.05,
            min_samples: 10,
            p95_ms: 2000.0,
            lag_blocks: 3,
            lag_secs: 60.0,
            gap_secs: 60,
            credits_fraction: 0.8,
            stale_block_times: 5.0,
            block_time_ms: None,
            sink_backlog_blocks: 64,
            webhook_url: None,
            webhook_retries: 3,
        }
    }
}

/// The `[index]` table: what is indexed besides blocks and transactions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Fetch, verify and store every block's receipts and logs. Unset: on when
    /// `full_transactions` is and no `[[index.logs]]` filter is set.
    pub receipts: Option<bool>,
    /// Keep only the logs matching one of these filters (`eth_getLogs`-style). Without
    /// receipts, they are what `eth_getLogs` is asked for.
    pub logs: Vec<LogFilterConfig>,
    /// Widest block range one `eth_getLogs` call asks for, until a provider's own limit is learned.
    pub logs_range: u64,
    /// Contracts whose events are decoded into typed tables.
    pub contracts: Vec<ContractConfig>,
    /// Spot checks (with receipts on): every this many seconds while following, one new
    /// block's receipts are asked of a provider that did not serve them, in turn, and verified
    /// against the header, so a provider that forges is caught even while nothing is routed to
    /// it. Costs one `eth_getBlockReceipts` each. 0: off.
    pub audit_secs: u64,
    /// Keep each block's and its receipts' JSON as the provider sent it and it was verified
    /// (zstd, ~1/3 of its size), so `/rpc` answers byte for byte what the node said.
    pub raw_json: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            receipts: None,
            logs: Vec::new(),
            logs_range: 1000,
            contracts: Vec::new(),
            audit_secs: 0,
            raw_json: true,
        }
    }
}

/// One `[[index.logs]]` filter: any of `address`, and per position any of `topicN` (each a
/// string or a list; empty = any). `topic0` may be an event signature.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFilterConfig {
    #[serde(deserialize_with = "one_or_many")]
    pub address: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub topic0: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub topic1: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub topic2: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub topic3: Vec<String>,
}

/// One `[[index.contracts]]` entry: events of `address` decoded into `evt_<name>_<event>`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// Lowercase letters, digits and `_` (it names tables).
    pub name: String,
    #[serde(deserialize_with = "one_or_many")]
    pub address: Vec<String>,
    /// First block to decode (earlier logs of the address are not its events).
    pub start_block: Option<u64>,
    /// A JSON ABI file (a list of items, or an object with an `abi` list, as compilers write);
    /// relative to the configuration file.
    pub abi: Option<PathBuf>,
    /// Human-readable events: `event Transfer(address indexed from, address indexed to, uint256 value)`.
    pub events: Vec<String>,
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The whole file. Every field has a default (`Config::default`, the one place they are
/// written down), so an empty file is valid.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub chain_id: Option<u64>,
    /// Give up at start-up when no provider answered `eth_chainId` within this long.
    pub startup_timeout_ms: u64,
    pub confirmations: u64,
    pub max_reorg_depth: u64,
    pub poll_interval_ms: u64,
    /// How heads are tracked: polls, their intervals by role and price, subscriptions.
    pub heads: HeadsConfig,
    /// The JSON-RPC endpoint on the API listener.
    pub rpc: RpcConfig,
    pub full_transactions: bool,
    pub verify_header_hash: bool,
    pub telemetry: bool,
    pub synchronous_full: bool,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Backfills of at least this many blocks drop the hash indexes (transactions, receipts,
    /// logs by hash) and rebuild them at the end.
    pub bulk_load_min_blocks: u64,
    /// A catch-up in `run` (at start, or after falling behind) of at least this many blocks goes
    /// through the bulk write path, then ingest switches back to the tip path.
    pub catch_up_bulk_min_blocks: u64,
    /// Run the gap-repair worker while following.
    pub gap_repair: bool,
    /// Cap on the database file (MiB); past it ingest pauses with "storage full".
    pub max_db_size_mb: Option<u64>,
    pub retention: RetentionConfig,
    pub index: IndexConfig,
    pub routing: RoutingConfig,
    pub api: ApiConfig,
    pub alerts: AlertsConfig,
    /// Publishing the chain to a broker (`[sink.nats]`).
    pub sink: SinkConfig,
    pub providers: Vec<ProviderConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chain_id: None,
            startup_timeout_ms: 30_000,
            confirmations: 0,
            max_reorg_depth: 64,
            poll_interval_ms: 1000,
            heads: HeadsConfig::default(),
            rpc: RpcConfig::default(),
            full_transactions: true,
            verify_header_hash: true,
            telemetry: true,
            synchronous_full: false,
            batch_size: 20,
            concurrency: 6,
            bulk_load_min_blocks: 5_000,
            catch_up_bulk_min_blocks: 256,
            gap_repair: true,
            max_db_size_mb: None,
            retention: RetentionConfig::default(),
            index: IndexConfig::default(),
            routing: RoutingConfig::default(),
            api: ApiConfig::default(),
            alerts: AlertsConfig::default(),
            sink: SinkConfig::default(),
            providers: Vec::new(),
        }
    }
}

impl Config {
    /// Parse TOML text (`path` is only for messages).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// Read and parse a file; ABI paths are taken relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        let mut c = Self::from_toml(&text, &p)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for k in &mut c.index.contracts {
            if let Some(abi) = &k.abi
                && abi.is_relative()
            {
                k.abi = Some(dir.join(abi));
            }
        }
        Ok(c)
    }

    /// Whether receipts and logs are fetched and stored (`[index] receipts`, else
    /// `full_transactions` when no log filter is set).
    pub fn receipts_enabled(&self) -> bool {
        self.index.receipts.unwrap_or(self.full_transactions && self.index.logs.is_empty())
    }

    /// Add `--rpc` URLs as providers named after their host.
    pub fn add_rpc_urls(&mut self, urls: &[String]) {
        for u in urls {
            self.providers.push(ProviderConfig {
                name: None,
                url: u.clone(),
                ws_url: None,
                poll_interval_ms: None,
                tier: Tier::Primary,
                max_rps: None,
                burst: None,
                max_concurrency: None,
                timeout_ms: None,
                weight: None,
                daily_credit_budget: None,
                monthly_credit_budget: None,
                price_per_million_credits: None,
                credits: Default::default(),
                chain_id: None,
            });
        }
    }
}
