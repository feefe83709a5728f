//! Who a provider is and what it costs: its URL (kept secret in logs), deadlines and size caps,
//! and the credits each method costs.

use std::fmt;
use std::time::Duration;

use super::method;

/// A provider URL. Its `Debug` and `Display` never show the path or query, where API keys live.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wrap a full URL (with any key in it).
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]` plus `/…` when there was more: safe to log and store.
    pub fn redacted(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("?", &self.0));
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..host_end];
        // user:password@host → host
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let more = if host_end < rest.len() && &rest[host_end..] != "/" { "/…" } else { "" };
        format!("{scheme}://{host}{more}")
    }

    /// The host (and port), used to name providers given only by URL.
    pub fn host(&self) -> String {
        let r = self.redacted();
        let after = r.split_once("://").map_or(r.as_str(), |(_, h)| h);
        after.trim_end_matches("/…").to_string()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How to reach one provider and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub url: SecretUrl,
    /// Where `newHeads` is subscribed to, when not `url` itself (a ws:// `url` serves both).
    pub ws_url: Option<SecretUrl>,
    /// Deadline for head polls and `eth_chainId`.
    pub head_timeout: Duration,
    /// Deadline for block fetches (single or batch).
    pub block_timeout: Duration,
    /// Largest response body accepted for head polls.
    pub head_max_bytes: u32,
    /// Largest response body accepted for block fetches.
    pub block_max_bytes: u32,
    /// What each method costs in the provider's credits (compute units).
    pub credits: CreditPrices,
}

/// Credits (compute units) a provider charges per JSON-RPC method: the configured overrides, else
/// a default table modelled on Alchemy's compute units (the most common pricing shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreditPrices {
    overrides: std::collections::BTreeMap<String, u32>,
}

impl CreditPrices {
    /// Prices with `overrides` taking precedence over the default table.
    pub fn new(overrides: std::collections::BTreeMap<String, u32>) -> Self {
        Self { overrides }
    }

    /// Credits one call of `method` costs.
    pub fn cost(&self, method: &str) -> u32 {
        if let Some(c) = self.overrides.get(method) {
            return *c;
        }
        match method {
            method::CHAIN_ID => 0,
            "eth_blockNumber" => 10,
            method::BLOCK_BY_NUMBER | method::BLOCK_BY_HASH => 16,
            method::BLOCK_RECEIPTS => 20,
            method::TX_RECEIPT => 15,
            method::LOGS => 60,
            _ => 10,
        }
    }
}

impl ProviderSpec {
    /// A spec with the default limits (head 2 s / 1 MiB, blocks 10 s / 16 MiB).
    pub fn new(name: impl Into<String>, url: SecretUrl) -> Self {
        Self {
            name: name.into(),
            url,
            ws_url: None,
            head_timeout: Duration::from_secs(2),
            block_timeout: Duration::from_secs(10),
            head_max_bytes: 1 << 20,
            block_max_bytes: 16 << 20,
            credits: CreditPrices::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        let u = SecretUrl::new("https://eth-mainnet.g.alchemy.com/v2/SECRETKEY");
        assert_eq!(u.redacted(), "https://eth-mainnet.g.alchemy.com/…");
        assert!(!format!("{u:?} {u}").contains("SECRETKEY"));
        assert_eq!(u.host(), "eth-mainnet.g.alchemy.com");
        let u = SecretUrl::new("http://user:pw@127.0.0.1:8545");
        assert_eq!(u.redacted(), "http://127.0.0.1:8545");
        let u = SecretUrl::new("https://x.io/?apikey=abc");
        assert!(!u.redacted().contains("abc"));
    }
}
