//! Configuration: the TOML file, `--rpc` URLs and `${VAR}` interpolation, validated up front.

use std::path::Path;

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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
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
            webhook_url: None,
            webhook_retries: 3,
        }
    }
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
    pub full_transactions: bool,
    pub verify_header_hash: bool,
    pub telemetry: bool,
    pub synchronous_full: bool,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Backfills of at least this many blocks drop the tx-hash index and rebuild it at the end.
    pub bulk_load_min_blocks: u64,
    /// Run the gap-repair worker while following.
    pub gap_repair: bool,
    /// Cap on the database file (MiB); past it ingest pauses with "storage full".
    pub max_db_size_mb: Option<u64>,
    pub retention: RetentionConfig,
    pub routing: RoutingConfig,
    pub api: ApiConfig,
    pub alerts: AlertsConfig,
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
            full_transactions: true,
            verify_header_hash: true,
            telemetry: true,
            synchronous_full: false,
            batch_size: 20,
            concurrency: 6,
            bulk_load_min_blocks: 5_000,
            gap_repair: true,
            max_db_size_mb: None,
            retention: RetentionConfig::default(),
            routing: RoutingConfig::default(),
            api: ApiConfig::default(),
            alerts: AlertsConfig::default(),
            providers: Vec::new(),
        }
    }
}

impl Config {
    /// Parse TOML text (`path` is only for messages).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        Self::from_toml(&text, &p)
    }

    /// Add `--rpc` URLs as providers named after their host.
    pub fn add_rpc_urls(&mut self, urls: &[String]) {
        for u in urls {
            self.providers.push(ProviderConfig {
                name: None,
                url: u.clone(),
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

    /// Check every field; expand `${VAR}` in URLs using `env`. Returns (name, url) per provider.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, ConfigError> {
        if self.providers.is_empty() {
            return Err(invalid("providers", "no provider configured: pass --rpc URL or a [[providers]] entry"));
        }
        if self.max_reorg_depth == 0 {
            return Err(invalid("max_reorg_depth", "must be at least 1"));
        }
        if self.retention.raw_days == 0 {
            return Err(invalid("retention.raw_days", "must be at least 1"));
        }
        if self.retention.rollup_days < self.retention.raw_days {
            return Err(invalid("retention.rollup_days", "must be at least retention.raw_days"));
        }
        if self.poll_interval_ms < 10 {
            return Err(invalid("poll_interval_ms", "must be at least 10"));
        }
        if self.batch_size == 0 || self.batch_size > 1000 {
            return Err(invalid("batch_size", "must be between 1 and 1000"));
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(invalid("concurrency", "must be between 1 and 256"));
        }
        let r = &self.routing;
        if !(r.breaker_error_rate > 0.0 && r.breaker_error_rate <= 1.0) {
            return Err(invalid("routing.breaker_error_rate", "must be within (0, 1]"));
        }
        if r.breaker_failures == 0 {
            return Err(invalid("routing.breaker_failures", "must be at least 1"));
        }
        if r.window_secs == 0 || r.request_deadline_ms == 0 {
            return Err(invalid("routing.window_secs/request_deadline_ms", "must be positive"));
        }
        self.check_api()?;
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let field = format!("providers[{i}].url");
            let url = interpolate(&p.url, &field, &env)?;
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(invalid(field, "must start with http:// or https://"));
            }
            let host = crate::provider::SecretUrl::new(url.clone()).host();
            if host.is_empty() {
                return Err(invalid(field, "has no host"));
            }
            if let Some(ms) = p.timeout_ms
                && ms == 0
            {
                return Err(invalid(format!("providers[{i}].timeout_ms"), "must be positive"));
            }
            if let Some(r) = p.max_rps
                && !(r > 0.0 && r.is_finite())
            {
                return Err(invalid(format!("providers[{i}].max_rps"), "must be a positive number"));
            }
            if let Some(w) = p.weight
                && !(w > 0.0 && w.is_finite())
            {
                return Err(invalid(format!("providers[{i}].weight"), "must be a positive number"));
            }
            if let Some(x) = p.price_per_million_credits
                && !(x >= 0.0 && x.is_finite())
            {
                return Err(invalid(format!("providers[{i}].price_per_million_credits"), "must be 0 or more"));
            }
            if p.max_concurrency == Some(0) || p.burst == Some(0) {
                return Err(invalid(format!("providers[{i}].max_concurrency/burst"), "must be at least 1"));
            }
            let base = match &p.name {
                Some(n) if n.trim().is_empty() => {
                    return Err(invalid(format!("providers[{i}].name"), "must not be empty"));
                }
                Some(n) => n.clone(),
                None => host,
            };
            let mut name = base.clone();
            let mut k = 2;
            while out.iter().any(|(n, _)| *n == name) {
                if p.name.is_some() {
                    return Err(invalid(format!("providers[{i}].name"), format!("duplicate name {base:?}")));
                }
                name = format!("{base}-{k}");
                k += 1;
            }
            out.push((name, url));
        }
        self.check_chain_ids()?;
        Ok(out)
    }

    /// A fleet follows one chain: every `providers[].chain_id` that is set must agree with the
    /// others and with `chain_id`.
    fn check_chain_ids(&self) -> Result<(), ConfigError> {
        let mut expected = self.chain_id.map(|c| (c, "chain_id".to_string()));
        for (i, p) in self.providers.iter().enumerate() {
            let Some(c) = p.chain_id else { continue };
            match &expected {
                Some((e, from)) if *e != c => {
                    return Err(invalid(
                        format!("providers[{i}].chain_id"),
                        format!("is {c} but {from} is {e}: a fleet follows one chain"),
                    ));
                }
                Some(_) => {}
                None => expected = Some((c, format!("providers[{i}].chain_id"))),
            }
        }
        Ok(())
    }

    /// The chain the configuration names: `chain_id`, else a provider's `chain_id` (they agree,
    /// checked by `resolve`). None: the providers' majority decides.
    pub fn expected_chain_id(&self) -> Option<u64> {
        self.chain_id.or_else(|| self.providers.iter().find_map(|p| p.chain_id))
    }
}

impl Config {
    fn check_api(&self) -> Result<(), ConfigError> {
        let a = &self.api;
        if !(a.rate_limit_rps > 0.0 && a.rate_limit_rps.is_finite()) || a.rate_limit_burst == 0 {
            return Err(invalid("api.rate_limit_rps/rate_limit_burst", "must be positive"));
        }
        if a.max_body_bytes == 0
            || a.max_connections == 0
            || a.max_connections_per_ip == 0
            || a.sql_concurrency == 0
            || a.sql_max_rows == 0
        {
            return Err(invalid("api.max_body_bytes/max_connections/sql_*", "must be positive"));
        }
        if a.sql_timeout_ms == 0 || a.request_timeout_ms == 0 || a.header_read_timeout_ms == 0 {
            return Err(invalid("api.*_timeout_ms", "must be positive"));
        }
        let al = &self.alerts;
        if al.interval_ms < 10 || al.window_secs == 0 {
            return Err(invalid("alerts.interval_ms/window_secs", "must be positive (interval at least 10 ms)"));
        }
        if !((0.0..=1.0).contains(&al.error_rate) && al.credits_fraction > 0.0 && al.credits_fraction.is_finite()) {
            return Err(invalid(
                "alerts.error_rate/credits_fraction",
                "error_rate within [0, 1], credits_fraction > 0",
            ));
        }
        Ok(())
    }

    /// `[api] listen` as an address.
    pub fn api_listen(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.api.listen.parse().map_err(|e| invalid("api.listen", format!("{e}")))
    }

    /// The API key with `${VAR}` expanded and surrounding whitespace removed (None when unset,
    /// empty or only whitespace: such a key protects nothing, so it allows no public bind).
    pub fn api_key(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
        match &self.api.api_key {
            None => Ok(None),
            Some(k) => {
                let k = interpolate(k, "api.api_key", &env)?;
                let k = k.trim();
                Ok((!k.is_empty()).then(|| k.to_string()))
            }
        }
    }

    /// Everything that comes from the environment (provider URLs, the API key, the webhook
    /// URL), checked at once, so a bad value is refused before any file is touched.
    pub fn check_env(&self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.resolve(&env)?;
        self.api_key(&env)?;
        self.webhook_url(&env)?;
        Ok(())
    }

    /// The configuration as JSON with every secret hidden: provider URLs keep only scheme and
    /// host, the API key and webhook URL are replaced by whether they are set.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(ps) = v.get_mut("providers").and_then(|p| p.as_array_mut()) {
            for (p, c) in ps.iter_mut().zip(&self.providers) {
                p["url"] = crate::provider::SecretUrl::new(c.url.clone()).redacted().into();
            }
        }
        if let Some(api) = v.get_mut("api") {
            api["api_key"] = serde_json::Value::from(self.api.api_key.is_some().then_some("(set)"));
        }
        if let Some(al) = v.get_mut("alerts") {
            al["webhook_url"] = serde_json::Value::from(self.alerts.webhook_url.is_some().then_some("(set)"));
        }
        v
    }

    /// The alert webhook URL with `${VAR}` expanded.
    pub fn webhook_url(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
        self.alerts.webhook_url.as_deref().map(|u| interpolate(u, "alerts.webhook_url", &env)).transpose()
    }
}

/// Expand `${VAR}` from `env`. A missing variable is an error naming the field.
fn interpolate(s: &str, field: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| invalid(field, "unterminated ${ in URL"))?;
        let var = &after[..end];
        if var.is_empty() {
            return Err(invalid(field, "empty ${} in URL"));
        }
        let v = env(var).ok_or_else(|| ConfigError::MissingEnv { field: field.into(), var: var.into() })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "KEY").then(|| "s3cret".to_string())
    }

    #[test]
    fn interpolates_and_names_providers() {
        let mut c =
            Config::from_toml("[[providers]]\nname = \"alchemy\"\nurl = \"https://x.io/v2/${KEY}\"\n", "t.toml")
                .unwrap_or_default();
        c.add_rpc_urls(&["http://127.0.0.1:1".into(), "http://127.0.0.1:1".into()]);
        let r = c.resolve(env).unwrap_or_default();
        assert_eq!(r[0], ("alchemy".into(), "https://x.io/v2/s3cret".into()));
        assert_eq!(r[1].0, "127.0.0.1:1");
        assert_eq!(r[2].0, "127.0.0.1:1-2");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = Config::from_toml("", "c.toml").unwrap_or_else(|_| Config { max_reorg_depth: 0, ..Config::default() });
        assert_eq!(c.max_reorg_depth, 64);
        assert_eq!((c.batch_size, c.concurrency, c.retention.raw_days), (20, 6, 7));
        assert!(c.full_transactions && c.verify_header_hash && c.telemetry);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_toml("max_reorg_dept = 3", "c.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("max_reorg_dept"), "{e}");
        let e = Config::from_toml("[[providers]]\nurl = 5", "c.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("url"), "{e}");
        let mut c = Config::default();
        c.add_rpc_urls(&["https://x.io/${NOPE}".into()]);
        let e = c.resolve(env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("providers[0].url") && e.contains("NOPE"), "{e}");
        let mut c = Config::default();
        c.add_rpc_urls(&["ftp://x".into()]);
        assert!(c.resolve(env).is_err());
        let mut c = Config::default();
        c.add_rpc_urls(&["http://a".into(), "http://b".into()]);
        c.providers[0].chain_id = Some(1);
        assert_eq!(c.expected_chain_id(), Some(1));
        c.providers[1].chain_id = Some(5);
        let e = c.resolve(env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("providers[1].chain_id") && e.contains("one chain"), "{e}");
        assert!(Config::default().resolve(env).is_err());
    }
}
