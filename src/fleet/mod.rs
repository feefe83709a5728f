//! The fleet: many providers behind one interface.
//!
//! Each request picks the best eligible provider for the configured strategy; a provider is
//! eligible when it is on the right chain, its breaker lets a request through, it is not cooling
//! down (`Retry-After`, bad key, 402), its budget is not spent, it has a free concurrency slot
//! and a token in its bucket, and it has reported a head at least as high as the height asked
//! for. Lagging providers are used only when nobody else can serve. The jobs live in:
//! - [`head`]: the fleet head from the providers' heads (pure), [`poll`]: chain check and
//!   publishing the head; [`track`]: head polls and their schedule, [`subscribe`]: `newHeads`;
//!   [`clock`]: the observed block time;
//! - [`health`]: window, breaker, cooldowns, integrity memory; [`limits`]: bucket, slots, AIMD;
//! - [`budget`]: credit budgets; [`select`]: score, strategies, the sticky primary;
//! - [`lease`]: admitting one call and settling it; [`route`]: picking the provider;
//! - [`failover`]: retries across providers, backoff, hedging.

mod audit;
mod budget;
mod clock;
mod failover;
pub mod forward;
mod head;
mod health;
mod lease;
mod limits;
mod logs;
mod poll;
mod receipts;
mod route;
pub mod select;
mod slot;
mod subscribe;
mod track;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::watch;

use failover::Attempts;
pub use head::FleetHead;
use head::HeadTracker;
pub use health::{Breaker, HealthOptions, WindowStats};
use select::Primary;
pub use select::{ScoreParts, Strategy};
use slot::{Slot, SlotState};
pub use track::HeadOptions;

use crate::config::{RoutingConfig, Tier};
use crate::model::{Block, EventKind, ProviderEvent, ProviderId, TelemetryEvent, TelemetrySink};
use crate::provider::wire::DecodeOptions;
use crate::provider::{CallCtx, Provider, method};
use crate::types::now_ms;

/// Why the fleet could not answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FleetError {
    #[error("no provider could serve {what} after {attempts} attempts; last error: {last}")]
    Exhausted { what: String, attempts: u32, last: String },
    #[error("no provider answered eth_chainId{}", if errors.is_empty() { String::new() } else { format!(": {errors}") })]
    NoChainId { errors: String },
    #[error("the providers do not agree on a chain ({answers}); set chain_id in the config to the chain you mean")]
    SplitChain { answers: String },
    #[error("chain id mismatch: expected {expected}, every provider that answered says otherwise ({seen})")]
    WrongChain { expected: u64, seen: String },
    #[error("the fleet has no provider {0}")]
    UnknownProvider(ProviderId),
    #[error("cancelled")]
    Cancelled,
    #[error(
        "{provider} did not confirm the write ({error}); it may have been sent, so it was not sent again elsewhere"
    )]
    WriteUncertain { provider: String, error: String },
}

/// How the fleet may use one provider (from its `[[providers]]` entry).
#[derive(Debug, Clone)]
pub struct ProviderPolicy {
    pub tier: Tier,
    /// Multiplies the score (> 1 prefers the provider).
    pub weight: f64,
    /// Token bucket rate; `None` = no configured limit (AIMD still learns one from 429s).
    pub max_rps: Option<f64>,
    pub burst: u32,
    pub max_concurrency: u32,
    /// USD per million credits (0 = free tier / own node).
    pub price_per_million: f64,
    pub daily_credit_budget: Option<u64>,
    pub monthly_credit_budget: Option<u64>,
    /// Its own head-poll interval, overriding the fleet's rules.
    pub poll_interval: Option<Duration>,
}

impl Default for ProviderPolicy {
    fn default() -> Self {
        Self {
            tier: Tier::Primary,
            weight: 1.0,
            max_rps: None,
            burst: 10,
            max_concurrency: 16,
            price_per_million: 0.0,
            daily_credit_budget: None,
            monthly_credit_budget: None,
            poll_interval: None,
        }
    }
}

/// Fleet-wide tunables (built from `[routing]`: `docs/configuration.md`).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub decode: DecodeOptions,
    pub strategy: Strategy,
    pub health: HealthOptions,
    /// Attempts per request across all providers.
    pub max_attempts: u32,
    /// A request gives up after this long, whatever the attempts.
    pub request_deadline: Duration,
    /// First backoff after a full pass of failures; doubles up to `backoff_max`, full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Hedge single-block tip fetches after the primary's p95, clamped to this range.
    pub hedge: bool,
    pub hedge_min: Duration,
    pub hedge_max: Duration,
    /// A provider more than this many blocks behind the fleet head is excluded (used only as a
    /// last resort).
    pub max_lag_blocks: u64,
    /// A head more than this far above every other provider's is not believed.
    pub max_head_lead: u64,
    /// The sticky primary changes only for a score better by this fraction…
    pub switch_margin: f64,
    /// …and at most this often (an excluded or tainted primary is replaced at once).
    pub switch_min_interval: Duration,
    /// Share of a budget kept in reserve: spending above the day's pace plus this is "over pace".
    pub budget_headroom: f64,
    /// How heads are tracked (set from `[heads]` and `poll_interval_ms` by the composition root).
    pub heads: HeadOptions,
}

impl FleetOptions {
    /// Options from the `[routing]` table (the one place the defaults are written down).
    pub fn from_routing(r: &RoutingConfig, decode: DecodeOptions) -> Self {
        let ms = Duration::from_millis;
        Self {
            decode,
            strategy: r.strategy,
            health: HealthOptions {
                window: Duration::from_secs(r.window_secs),
                breaker_failures: r.breaker_failures,
                breaker_error_rate: r.breaker_error_rate,
                breaker_min_samples: r.breaker_min_samples,
                breaker_cooldown: ms(r.breaker_cooldown_ms),
                breaker_close_successes: 2,
                default_throttle_cooldown: ms(r.throttle_cooldown_ms),
                max_retry_after: ms(r.max_retry_after_ms),
                auth_cooldown: ms(r.max_retry_after_ms),
                integrity_strikes: 3,
                integrity_memory: Duration::from_secs(r.integrity_memory_secs),
            },
            max_attempts: 8,
            request_deadline: ms(r.request_deadline_ms),
            backoff_base: ms(100),
            backoff_max: Duration::from_secs(5),
            hedge: r.hedge,
            hedge_min: ms(100),
            hedge_max: ms(r.hedge_max_ms),
            max_lag_blocks: r.max_lag_blocks,
            max_head_lead: 64,
            switch_margin: 0.2,
            switch_min_interval: ms(r.switch_min_interval_ms),
            budget_headroom: 0.1,
            heads: HeadOptions::default(),
        }
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self::from_routing(
            &RoutingConfig::default(),
            DecodeOptions { full_transactions: true, verify_header_hash: true, keep_raw: false },
        )
    }
}

/// Up to this many heights at the tip are fetched (and hedged) one by one instead of batched.
const TIP_BATCH: usize = 4;

/// A provider's state in one word, as `/v1/providers` and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderState {
    Healthy,
    /// Serving, with errors or throttles above 5 % or a half-open breaker.
    Degraded,
    /// Breaker open.
    Down,
    /// Wrong chain, budget spent, cooling down or lagging: asked only as a last resort, if at all.
    Excluded,
}

impl ProviderState {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Excluded => "excluded",
        }
    }

    /// Healthy or degraded: it takes requests.
    pub fn serving(self) -> bool {
        matches!(self, Self::Healthy | Self::Degraded)
    }
}

/// What `/v1/providers` and the tests see of one provider.
#[derive(Debug, Clone)]
pub struct ProviderStatus {
    pub id: ProviderId,
    pub name: String,
    pub tier: Tier,
    pub state: ProviderState,
    /// Why it is not healthy (empty when it is).
    pub reason: String,
    pub breaker: Breaker,
    pub primary: bool,
    pub head: Option<u64>,
    pub lag_blocks: u64,
    pub lag_secs: f64,
    /// Where its head comes from: `polled`, `subscription`, `reconnecting` (polled meanwhile),
    /// `silent` (a subscription that went quiet; polled).
    pub heads: &'static str,
    /// Its head-poll interval now (by role and price; unused while on a live subscription).
    pub poll_interval_ms: u64,
    pub window: WindowStats,
    pub parts: ScoreParts,
    pub score: f64,
    pub credits_today: u64,
    pub daily_credit_budget: Option<u64>,
    pub rps_limit: Option<f64>,
    pub cooldown_ms: u64,
    /// What the provider was found to support.
    pub capabilities: crate::provider::Capabilities,
}

/// Many providers, one interface.
#[derive(Debug)]
pub struct Fleet {
    /// In id order: slot `i` holds provider `ProviderId(i)` (checked in `new`).
    slots: Vec<Slot>,
    opts: FleetOptions,
    rotation: AtomicUsize,
    head_tx: watch::Sender<Option<FleetHead>>,
    telemetry: TelemetrySink,
    chain_id: Mutex<Option<u64>>,
    primary: Mutex<Primary>,
    tracker: Mutex<HeadTracker>,
    clock: Mutex<clock::BlockClock>,
    tip: Mutex<TipBlocks>,
}

/// What the fleet learned from the blocks it fetched at the tip.
#[derive(Debug, Default)]
struct TipBlocks {
    /// Recent heights' block hashes (number-only head reports become sightings with them).
    hashes: std::collections::BTreeMap<u64, B256>,
    /// Who served the newest one.
    server: Option<ProviderId>,
}

impl Fleet {
    /// A fleet over `providers` and their policies. Their ids must be 0, 1, 2… in order.
    pub fn new(
        providers: Vec<(Arc<Provider>, ProviderPolicy)>,
        opts: FleetOptions,
        telemetry: TelemetrySink,
    ) -> Result<Self, FleetError> {
        let now = Instant::now();
        let mut slots = Vec::with_capacity(providers.len());
        for (i, (provider, policy)) in providers.into_iter().enumerate() {
            if provider.id().position() != i {
                return Err(FleetError::UnknownProvider(provider.id()));
            }
            slots.push(Slot::new(provider, policy, &opts, now));
        }
        let (head_tx, _) = watch::channel(None);
        Ok(Self {
            slots,
            rotation: AtomicUsize::new(0),
            head_tx,
            telemetry,
            chain_id: Mutex::new(None),
            primary: Mutex::new(Primary::new(opts.switch_margin, opts.switch_min_interval, now)),
            tracker: Mutex::new(HeadTracker::new(opts.max_head_lead, opts.max_lag_blocks)),
            clock: Mutex::new(clock::BlockClock::default()),
            tip: Mutex::new(TipBlocks::default()),
            opts,
        })
    }

    /// The providers, in id order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.slots.iter().map(|s| &s.provider)
    }

    /// The provider with this id.
    pub fn provider(&self, id: ProviderId) -> Option<&Arc<Provider>> {
        self.slots.get(id.position()).map(|s| &s.provider)
    }

    /// The slot of a provider of this fleet. Ids come from the fleet's own providers (checked
    /// dense in `new`); a foreign id falls back to the first slot rather than panicking.
    fn slot(&self, id: ProviderId) -> &Slot {
        match self.slots.get(id.position()) {
            Some(s) => s,
            None => {
                tracing::error!(%id, "provider id from another fleet");
                &self.slots[0]
            }
        }
    }

    fn lock_primary(&self) -> MutexGuard<'_, Primary> {
        self.primary.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_tracker(&self) -> MutexGuard<'_, HeadTracker> {
        self.tracker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_clock(&self) -> MutexGuard<'_, clock::BlockClock> {
        self.clock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_tip(&self) -> MutexGuard<'_, TipBlocks> {
        self.tip.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decode options every fetch uses.
    pub fn decode_options(&self) -> DecodeOptions {
        self.opts.decode
    }

    /// Subscribe to the fleet head (None until a provider answered a head poll).
    pub fn subscribe_head(&self) -> watch::Receiver<Option<FleetHead>> {
        self.head_tx.subscribe()
    }

    /// The fleet head now (None until a provider reported one).
    pub fn head(&self) -> Option<FleetHead> {
        *self.head_tx.borrow()
    }

    /// The options the fleet runs with (strategy, window, thresholds).
    pub fn options(&self) -> &FleetOptions {
        &self.opts
    }

    fn emit(&self, slot: &Slot, kind: EventKind, reason: String) {
        let name = slot.provider.name();
        if kind.is_warning() {
            tracing::warn!(provider = name, event = kind.as_str(), %reason, "provider event");
        } else {
            tracing::info!(provider = name, event = kind.as_str(), %reason, "provider event");
        }
        self.telemetry.record(TelemetryEvent::Provider(ProviderEvent {
            ts_ms: now_ms(),
            provider: slot.id(),
            kind,
            reason,
        }));
    }

    fn drain_events(&self, slot: &Slot, st: &mut SlotState) {
        for (kind, reason) in st.health.take_events() {
            self.emit(slot, kind, reason);
        }
    }

    /// Is `n` at the tip (worth hedging)?
    fn at_tip(&self, n: u64) -> bool {
        self.head().is_some_and(|h| n + 2 >= h.number)
    }

    /// One block by number, from whichever provider serves it first (hedged at the tip).
    #[tracing::instrument(name = "fetch", skip(self), fields(height = number))]
    pub async fn block_by_number(&self, number: u64) -> Result<Block, FleetError> {
        let opts = self.opts.decode;
        let hedge = self.opts.hedge && self.at_tip(number);
        let b = self
            .with_failover(
                || format!("block {number}"),
                method::BLOCK_BY_NUMBER,
                Some(number),
                hedge,
                |p, ctx| async move { p.block_by_number(number, opts, ctx).await },
            )
            .await?;
        if self.at_tip(number) {
            self.learned_block(b.number, b.hash, b.provider);
        }
        Ok(b)
    }

    /// One block by hash (reorg walk-back).
    #[tracing::instrument(name = "fetch", skip(self), fields(hash = %hash))]
    pub async fn block_by_hash(&self, hash: B256) -> Result<Block, FleetError> {
        let opts = self.opts.decode;
        self.with_failover(
            || format!("block {hash}"),
            method::BLOCK_BY_HASH,
            None,
            false,
            |p, ctx| async move { p.block_by_hash(hash, opts, ctx).await },
        )
        .await
    }

    /// Blocks `numbers` (ascending), batched per provider; heights a provider failed are asked of
    /// the next one. Returns them in order, or the error for the first height nobody served.
    pub async fn blocks_by_number(&self, numbers: &[u64]) -> Result<Vec<Block>, FleetError> {
        // A few heights at the tip (ingest fell a block or two behind): fetch them one by one so
        // each is hedged, rather than as one unhedged batch a slow provider can hold up.
        if numbers.len() <= TIP_BATCH && self.opts.hedge && numbers.last().is_some_and(|n| self.at_tip(*n)) {
            return futures::future::try_join_all(numbers.iter().map(|n| self.block_by_number(*n))).await;
        }
        if let [n] = numbers {
            return self.block_by_number(*n).await.map(|b| vec![b]);
        }
        let blocks = self.blocks_by_number_avoiding(numbers, &[]).await?;
        // A batch reaching the tip (hedging off, or ingest a few blocks behind): its newest
        // blocks name the hashes number-only head reports wait for.
        for b in blocks.iter().rev().take(TIP_BATCH).filter(|b| self.at_tip(b.number)) {
            self.learned_block(b.number, b.hash, b.provider);
        }
        Ok(blocks)
    }

    /// Like [`blocks_by_number`](Self::blocks_by_number), but asks the providers in `avoid`
    /// only after every other one failed or was ineligible.
    #[tracing::instrument(name = "fetch", skip_all, fields(from = numbers.first(), to = numbers.last()))]
    pub async fn blocks_by_number_avoiding(
        &self,
        numbers: &[u64],
        avoid: &[ProviderId],
    ) -> Result<Vec<Block>, FleetError> {
        let opts = self.opts.decode;
        let mut got: Vec<Option<Block>> = vec![None; numbers.len()];
        let mut tries = Attempts::new(self, avoid);
        loop {
            let missing: Vec<usize> = (0..numbers.len()).filter(|&k| got[k].is_none()).collect();
            let Some(&first_missing) = missing.first() else {
                return Ok(got.into_iter().flatten().collect());
            };
            let what = || format!("block {}", numbers[first_missing]);
            let want: Vec<u64> = missing.iter().map(|&k| numbers[k]).collect();
            let lease = tries.lease(method::BLOCK_BY_NUMBER, want.len() as u64, want.last().copied(), &what).await?;
            let id = lease.id();
            let ctx = CallCtx { attempt: tries.attempt(), hedged: false };
            let started = Instant::now();
            let results = lease.slot.provider.blocks_by_number(&want, opts, ctx).await;
            let mut first_err = None;
            for (k, r) in missing.iter().zip(results) {
                match r {
                    Ok(b) => got[*k] = Some(b),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            self.settle(lease, started, first_err.as_ref().map_or(Ok(()), Err), true);
            if let Some(e) = first_err {
                tries.failed(id, &e, &what)?;
            }
        }
    }

    /// Start the budgets from what was already spent (after a restart): `today` credits since
    /// the UTC day began and `this_month` since the 30-day period began.
    pub fn seed_spend(&self, id: ProviderId, today: u64, this_month: u64) -> Result<(), FleetError> {
        let slot = self.slots.get(id.position()).ok_or(FleetError::UnknownProvider(id))?;
        slot.lock().spend.seed(now_ms(), today, this_month);
        Ok(())
    }

    /// Start of the current budget day and month (ms), as the budgets count them.
    pub fn budget_periods(now_ms: i64) -> (i64, i64) {
        budget::periods(now_ms)
    }

    /// Each provider's name and the error of its last failed call, if any (start-up diagnostics).
    pub fn last_errors(&self) -> Vec<(String, Option<String>)> {
        self.slots.iter().map(|s| (s.provider.name().to_string(), s.lock().last_error.clone())).collect()
    }

    /// Every provider's state, score and figures now.
    pub fn status(&self) -> Vec<ProviderStatus> {
        let now = Instant::now();
        let ms = now_ms();
        let primary = self.lock_primary().current();
        let tracker = self.lock_tracker();
        self.slots
            .iter()
            .map(|slot| {
                // Read before the slot lock (it looks at the tip, which is locked after slots).
                let poll_interval = self.poll_interval(slot);
                let st = slot.lock();
                // Spent means what is left does not buy a block fetch.
                let fetch = u64::from(slot.provider.credits(method::BLOCK_BY_NUMBER));
                let verdict = st.spend.judge(&slot.policy, ms, self.opts.budget_headroom, fetch);
                let (w, parts) = st.score(&slot.policy, now, verdict.over_pace);
                let cooldown = st.health.cooldown_until(now);
                // Spent, or refused a call today for want of credits (what is left buys nothing).
                let spent = verdict.exhausted || st.budget_out == Some(ms / budget::DAY_MS);
                let (state, reason) = state_of(&st, &w, &parts, spent, cooldown.map(|t| t - now));
                ProviderStatus {
                    id: slot.id(),
                    name: slot.provider.name().to_string(),
                    tier: slot.policy.tier,
                    state,
                    reason,
                    breaker: st.health.breaker(),
                    primary: primary == Some(slot.id()),
                    head: st.head.map(|h| h.number),
                    lag_blocks: st.lag_blocks,
                    lag_secs: st.head.map_or(0.0, |h| tracker.lag_secs(h.number, now)),
                    heads: st.sub.as_str(),
                    poll_interval_ms: u64::try_from(poll_interval.as_millis()).unwrap_or(u64::MAX),
                    window: w,
                    parts,
                    score: parts.score(),
                    credits_today: st.spend.today(ms),
                    daily_credit_budget: slot.policy.daily_credit_budget,
                    rps_limit: slot.limits.current_rps(),
                    capabilities: slot.provider.capabilities(),
                    cooldown_ms: cooldown
                        .map_or(0, |t| u64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)),
                }
            })
            .collect()
    }
}

/// A provider's state and why, from its slot and window figures.
fn state_of(
    st: &SlotState,
    w: &WindowStats,
    parts: &ScoreParts,
    budget_spent: bool,
    cooldown: Option<Duration>,
) -> (ProviderState, String) {
    let breaker = st.health.breaker();
    if st.health.chain_ok == Some(false) {
        (ProviderState::Excluded, "wrong chain".into())
    } else if budget_spent {
        (ProviderState::Excluded, "credit budget spent".into())
    } else if breaker == Breaker::Open {
        (ProviderState::Down, "circuit breaker open".into())
    } else if let Some(d) = cooldown {
        (ProviderState::Excluded, format!("cooling down for {} ms", d.as_millis()))
    } else if st.lagging {
        (ProviderState::Excluded, format!("lagging {} blocks", st.lag_blocks))
    } else if parts.tainted() {
        let why = format!("served forged or inconsistent blocks (integrity penalty {:.2})", parts.integrity);
        (ProviderState::Degraded, why)
    } else if breaker == Breaker::HalfOpen || w.error_rate > 0.05 || w.throttle_rate > 0.05 {
        let why = format!("error rate {:.1}%, throttle rate {:.1}%", w.error_rate * 100.0, w.throttle_rate * 100.0);
        (ProviderState::Degraded, why)
    } else {
        (ProviderState::Healthy, String::new())
    }
}

#[cfg(test)]
mod tests;
