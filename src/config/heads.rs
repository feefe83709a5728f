//! The `[heads]` table: how each provider's head is tracked (polls by `eth_blockNumber` or by
//! header, their intervals by role and price, and when a subscription counts as silent).

use serde::{Deserialize, Serialize};

/// What a head poll asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadPoll {
    /// `eth_blockNumber` (10 credits at Alchemy): the height only. Blocks are fetched once,
    /// by ingest, when a height moved; a fork shows when the next block does not link.
    #[default]
    Number,
    /// `eth_getBlockByNumber("latest", false)` (16 credits): height and hash, so providers
    /// split at the same height are voted on and a same-height reorg is seen at once.
    Header,
}

impl HeadPoll {
    /// The configured word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Header => "header",
        }
    }
}

/// `[heads]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadsConfig {
    pub poll: HeadPoll,
    /// Poll interval of a paid provider that is not the primary (it serves no blocks, so its
    /// head only matters for failover and lag). Free ones and the primary use `poll_interval_ms`.
    pub standby_poll_interval_ms: u64,
    /// After a new height, wait this share of the observed block time before polling again
    /// (0 = poll at every interval): on a 12 s chain with 1 s polls, 4 polls per block, not 12.
    pub quiet_fraction: f64,
    /// A subscription with no head for this many block times while other providers advance is
    /// silent: the provider is polled instead, with a provider event, and resubscribed later.
    pub silent_blocks: u32,
}

impl Default for HeadsConfig {
    fn default() -> Self {
        Self { poll: HeadPoll::Number, standby_poll_interval_ms: 10_000, quiet_fraction: 0.75, silent_blocks: 3 }
    }
}
