//! The `[rpc]` table: the JSON-RPC endpoint (`POST /rpc`): what `latest` means, how fresh a
//! local answer must be, and the limits a node would also have.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// What `eth_blockNumber` and the `latest` tag name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RpcHead {
    /// The newest stored block: every answer about `latest` comes from the store.
    #[default]
    Stored,
    /// The fleet's head: newer by the blocks ingest has not committed yet; calls about heights
    /// not stored yet are forwarded.
    Fleet,
}

impl RpcHead {
    /// The configured word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Fleet => "fleet",
        }
    }
}

/// `[rpc]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Serve `POST /rpc` on the API listener.
    pub enabled: bool,
    pub head: RpcHead,
    /// The store answers about `latest` only while its head is at most this many blocks below
    /// the fleet's; further behind, those calls are forwarded.
    pub max_lag_blocks: u64,
    /// Most calls in one batch (a node's default: geth 1000).
    pub max_batch: usize,
    /// Most logs one `eth_getLogs` returns, and the widest block range it may ask (both
    /// geth-like; past either, the error names a range that fits, as providers do).
    pub max_logs: usize,
    pub max_logs_range: u64,
    /// Largest request body (a batch, a raw transaction); larger gets 413.
    pub max_request_bytes: usize,
    /// Largest response body (a batch of full blocks stops here with an error).
    pub max_response_bytes: usize,
    /// Named keys (`Authorization: Bearer KEY`, or the URL `/rpc/KEY` for clients that only
    /// take a URL), each with its own rate and methods. Empty: the endpoint has no keys.
    pub keys: Vec<RpcKey>,
    /// Serve calls that carry no key. Unset: only while no key is configured.
    pub anonymous: Option<bool>,
    /// WebSocket connections served at once (past it, the upgrade gets 503).
    pub max_ws_connections: usize,
    /// Subscriptions one WebSocket connection may hold.
    pub max_subscriptions: usize,
    /// Bytes queued for one WebSocket client; a client that lets the queue stay full for
    /// `[api] stream_send_timeout_ms` is cut off with the reason in the close frame.
    pub ws_queue_bytes: usize,
}

/// One `[[rpc.keys]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RpcKey {
    /// What `client_requests.key_name` and `/metrics` call this client.
    pub name: String,
    /// The secret (`${VAR}` is expanded from the environment).
    pub key: String,
    /// Calls per second (each call of a batch counts); unset: no limit.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Calls allowed at once above the rate (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Methods this key may call: exact names, or a prefix ending in `*` (`eth_get*`, `*`).
    #[serde(default = "every_method")]
    pub methods: Vec<String>,
    /// Refuse the write methods (`eth_sendRawTransaction`, …) whatever `methods` allows.
    #[serde(default)]
    pub read_only: bool,
}

fn every_method() -> Vec<String> {
    vec!["*".into()]
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            head: RpcHead::Stored,
            max_lag_blocks: 3,
            max_batch: 1000,
            max_logs: 10_000,
            max_logs_range: 10_000,
            max_request_bytes: 5 << 20,
            max_response_bytes: 32 << 20,
            keys: Vec::new(),
            anonymous: None,
            max_ws_connections: 256,
            max_subscriptions: 128,
            ws_queue_bytes: 4 << 20,
        }
    }
}

impl RpcConfig {
    /// Every limit positive; key names unique and plain; rates positive; patterns well formed.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if [self.max_batch, self.max_logs, self.max_request_bytes, self.max_response_bytes].contains(&0)
            || self.max_logs_range == 0
        {
            return Err(invalid("rpc.max_*", "must be positive"));
        }
        if self.max_ws_connections == 0 || self.max_subscriptions == 0 || self.ws_queue_bytes == 0 {
            return Err(invalid("rpc.max_ws_connections/max_subscriptions/ws_queue_bytes", "must be positive"));
        }
        for (i, k) in self.keys.iter().enumerate() {
            let field = |f: &str| format!("rpc.keys[{i}].{f}");
            let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if k.name.is_empty() || k.name.len() > 64 || !k.name.chars().all(plain) {
                return Err(invalid(field("name"), "1 to 64 letters, digits, '-', '_' or '.'"));
            }
            if self.keys[..i].iter().any(|o| o.name == k.name) {
                return Err(invalid(field("name"), format!("duplicate name {:?}", k.name)));
            }
            if k.rate_per_second.is_some_and(|r| !(r > 0.0 && r.is_finite())) || k.burst == Some(0) {
                return Err(invalid(field("rate_per_second/burst"), "must be positive"));
            }
            if let Some(m) = k.methods.iter().find(|m| m.is_empty() || m.strip_suffix('*').unwrap_or(m).contains('*')) {
                return Err(invalid(field("methods"), format!("{m:?}: a method name, or a prefix ending in '*'")));
            }
        }
        Ok(())
    }

    /// The keys with `${VAR}` expanded and trimmed; each must be non-empty and unique.
    pub fn resolve_keys(&self, env: &impl Fn(&str) -> Option<String>) -> Result<Vec<RpcKey>, ConfigError> {
        let mut out: Vec<RpcKey> = Vec::with_capacity(self.keys.len());
        for (i, k) in self.keys.iter().enumerate() {
            let field = format!("rpc.keys[{i}].key");
            let secret = super::check::interpolate(&k.key, &field, env)?.trim().to_string();
            if secret.is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
            if let Some(o) = out.iter().find(|o| o.key == secret) {
                return Err(invalid(field, format!("the same key as {:?}", o.name)));
            }
            out.push(RpcKey { key: secret, ..k.clone() });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn config(keys: &str) -> Result<Config, crate::config::ConfigError> {
        let c = Config::from_toml(&format!("[[providers]]\nurl = \"http://127.0.0.1:1\"\n{keys}"), "t.toml")?;
        c.resolve(|_| None)?;
        Ok(c)
    }

    #[test]
    fn keys_are_checked_expanded_and_never_shown() {
        let ok = "[[rpc.keys]]\nname = \"public\"\nkey = \"${PUB}\"\nrate_per_second = 2.5\nmethods = [\"eth_get*\"]\n";
        let c = config(ok).unwrap_or_else(|e| panic!("{e}"));
        let env = |v: &str| (v == "PUB").then(|| " s3cret ".to_string());
        let keys = c.rpc.resolve_keys(&env).unwrap_or_default();
        assert_eq!((keys[0].key.as_str(), keys[0].burst, keys[0].read_only), ("s3cret", None, false));
        assert!(c.rpc.resolve_keys(&|_| None).is_err(), "an unset variable is an error");
        assert_eq!(c.redacted()["rpc"]["keys"][0]["key"], "(set)");
        for (bad, field) in [
            ("[[rpc.keys]]\nname = \"a b\"\nkey = \"k\"\n", "name"),
            ("[[rpc.keys]]\nname = \"a\"\nkey = \"k\"\n[[rpc.keys]]\nname = \"a\"\nkey = \"j\"\n", "name"),
            ("[[rpc.keys]]\nname = \"a\"\nkey = \"k\"\nrate_per_second = 0\n", "rate_per_second"),
            ("[[rpc.keys]]\nname = \"a\"\nkey = \"k\"\nmethods = [\"e*th\"]\n", "methods"),
            ("[rpc]\nws_queue_bytes = 0\n", "ws_queue_bytes"),
        ] {
            let e = config(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(field), "{bad}: {e}");
        }
        let twice = config("[[rpc.keys]]\nname = \"a\"\nkey = \"k\"\n[[rpc.keys]]\nname = \"b\"\nkey = \"k\"\n");
        let e = twice.ok().map(|c| c.rpc.resolve_keys(&|_| None).err().map(|e| e.to_string()));
        assert!(e.flatten().is_some_and(|e| e.contains("the same key")), "two names, one secret");
    }
}
