//! The `[rpc]` table: the JSON-RPC endpoint (`POST /rpc`): what `latest` means, how fresh a
//! local answer must be, and the limits a node would also have.

use serde::{Deserialize, Serialize};

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
        }
    }
}
