//! One provider's place in the fleet: its client, policy and limits, and the mutable state the
//! routing rules read (health, head, lag, spend) behind one lock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use alloy_primitives::B256;

use super::budget::Spend;
use super::health::{Breaker, Health, WindowStats};
use super::select::{self, ScoreInputs, ScoreParts};
use super::{FleetOptions, ProviderPolicy};
use crate::model::{Head, ProviderId};
use crate::provider::Provider;

/// A provider's latest head: its height, and its hash and parent when the report carried them
/// (a header poll or a subscription does; `eth_blockNumber` does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tip {
    pub(super) number: u64,
    pub(super) hash: Option<B256>,
    pub(super) parent_hash: Option<B256>,
}

impl From<Head> for Tip {
    fn from(h: Head) -> Self {
        Self { number: h.number, hash: Some(h.hash), parent_hash: Some(h.parent_hash) }
    }
}

/// Where a provider's `newHeads` subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum SubState {
    /// No WebSocket URL: heads are polled.
    #[default]
    None,
    /// Connecting or reconnecting; polled meanwhile.
    Connecting,
    /// Heads arrive by notification; not polled.
    Live,
    /// Went silent while the chain advanced: polled until a resubscription delivers a head.
    Silent,
}

impl SubState {
    /// Where the provider's head comes from, as `/v1/providers` says it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::None => "polled",
            Self::Connecting => "reconnecting",
            Self::Live => "subscription",
            Self::Silent => "silent",
        }
    }
}

/// Mutable state of one provider.
#[derive(Debug)]
pub(super) struct SlotState {
    pub(super) health: Health,
    pub(super) head: Option<Tip>,
    pub(super) head_at: Option<Instant>,
    /// When its height last rose (the next poll may wait most of a block time after it).
    pub(super) moved_at: Option<Instant>,
    /// When its head was last polled.
    pub(super) polled_at: Option<Instant>,
    pub(super) sub: SubState,
    pub(super) last_sighting: Option<B256>,
    /// A height seen by number only, with when: its sighting is recorded once its hash is known.
    pub(super) unsighted: Option<(u64, i64)>,
    pub(super) lag_blocks: u64,
    /// Since when it has been behind by more than `max_lag_blocks` (by report time).
    pub(super) beyond_since: Option<Instant>,
    pub(super) lagging: bool,
    pub(super) spend: Spend,
    /// The budget day a refusal was last reported for.
    pub(super) budget_out: Option<i64>,
    /// The last error of a call, for start-up diagnostics ("connection refused", "HTTP 401").
    pub(super) last_error: Option<String>,
}

/// One provider of the fleet.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) provider: Arc<Provider>,
    pub(super) policy: ProviderPolicy,
    pub(super) limits: super::limits::Limits,
    state: Mutex<SlotState>,
}

impl Slot {
    pub(super) fn new(provider: Arc<Provider>, policy: ProviderPolicy, opts: &FleetOptions, now: Instant) -> Self {
        Self {
            limits: super::limits::Limits::new(policy.max_rps, policy.burst, policy.max_concurrency),
            state: Mutex::new(SlotState {
                health: Health::new(opts.health.clone(), now),
                head: None,
                head_at: None,
                moved_at: None,
                polled_at: None,
                sub: SubState::None,
                last_sighting: None,
                unsighted: None,
                lag_blocks: 0,
                beyond_since: None,
                lagging: false,
                spend: Spend::default(),
                budget_out: None,
                last_error: None,
            }),
            provider,
            policy,
        }
    }

    /// The provider's id.
    pub(super) fn id(&self) -> ProviderId {
        self.provider.id()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A poisoned lock only means another task panicked mid-update of plain counters.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Price of one `method` call in USD.
    pub(super) fn price(&self, method: &str) -> f64 {
        f64::from(self.provider.credits(method)) * self.policy.price_per_million / 1e6
    }
}

impl SlotState {
    /// Window figures and score parts now (selection and `status` read the same numbers).
    pub(super) fn score(&self, policy: &ProviderPolicy, now: Instant, over_pace: bool) -> (WindowStats, ScoreParts) {
        let w = self.health.stats(now);
        let parts = select::parts(&ScoreInputs {
            weight: policy.weight,
            p95_ms: w.p95_ms,
            error_rate: w.error_rate,
            throttle_rate: w.throttle_rate,
            lag_blocks: self.lag_blocks,
            half_open: self.health.breaker() == Breaker::HalfOpen,
            over_pace,
            forgeries: self.health.forgeries(now),
        });
        (w, parts)
    }
}
