//! The fleet: many providers behind one interface — head polling, scoring and selection,
//! failover with backoff, hedged tip fetches, rate limits, circuit breakers and budgets.
//!
//! Each request picks the best eligible provider for the configured strategy
//! ([`select`]); a provider is eligible when it is on the right chain, its breaker lets a request
//! through, it is not cooling down (`Retry-After`, bad key, 402), its budget is not spent, it has
//! a free concurrency slot and a token in its bucket, and it has reported a head at least as high
//! as the height asked for. Lagging providers are used only when nobody else can serve.

mod health;
mod limits;
pub mod select;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use futures::future::join_all;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;

use health::Health;
pub use health::{Breaker, HealthOptions, WindowStats};
use limits::{LimitWait, Limits};
use select::Candidate;
pub use select::{ScoreParts, Strategy};

use crate::config::{RoutingConfig, Tier};
use crate::model::{Block, Head, ProviderEvent, Sighting, TelemetryEvent, TelemetrySink};
use crate::provider::wire::DecodeOptions;
use crate::provider::{CallCtx, Provider, ProviderError, method};
use crate::types::now_ms;

/// Why the fleet could not answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FleetError {
    #[error("no provider could serve {what} after {attempts} attempts; last error: {last}")]
    Exhausted { what: String, attempts: u32, last: String },
    #[error("no provider reports the chain id; is any of them reachable?")]
    NoChainId,
    #[error("chain id mismatch: expected {expected}, every provider that answered says otherwise ({seen})")]
    WrongChain { expected: u64, seen: String },
    #[error("cancelled")]
    Cancelled,
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
        }
    }
}

/// Fleet-wide tunables (defaults documented in the README).
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
    /// …and at most this often (an excluded primary is replaced at once).
    pub switch_min_interval: Duration,
    /// Share of a budget kept in reserve: spending above the day's pace plus this is "over pace".
    pub budget_headroom: f64,
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
        }
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self::from_routing(
            &RoutingConfig::default(),
            DecodeOptions { full_transactions: true, verify_header_hash: true },
        )
    }
}

/// The best head across the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetHead {
    pub number: u64,
    pub hash: B256,
    /// Fleet index of a provider that reported it.
    pub provider: u16,
}

/// Credits spent against daily and monthly budgets (UTC days; 30-day months).
#[derive(Debug, Default)]
struct Spend {
    day: i64,
    today: u64,
    month: i64,
    this_month: u64,
}

const DAY_MS: i64 = 86_400_000;

/// Up to this many heights at the tip are fetched (and hedged) one by one instead of batched.
const TIP_BATCH: usize = 4;

/// How long a request may wait for a clearly better primary to report the height it needs.
const LEADER_PATIENCE: Duration = Duration::from_millis(250);

/// How long a minority branch at the top must stand before the fleet head moves to it.
const FORK_CONFIRM: Duration = Duration::from_secs(1);

/// How long a provider may be more than `max_lag_blocks` behind before it counts as lagging.
const LAG_GRACE: Duration = Duration::from_secs(1);

/// A head older than this does not count as a witness against another provider's head.
const FRESH_HEAD: Duration = Duration::from_secs(5);

impl Spend {
    fn roll(&mut self, now_ms: i64) {
        let (day, month) = (now_ms / DAY_MS, now_ms / (30 * DAY_MS));
        if day != self.day {
            self.day = day;
            self.today = 0;
        }
        if month != self.month {
            self.month = month;
            self.this_month = 0;
        }
    }

    fn add(&mut self, now_ms: i64, credits: u64) {
        self.roll(now_ms);
        self.today = self.today.saturating_add(credits);
        self.this_month = self.this_month.saturating_add(credits);
    }

    /// (exhausted, over pace) against the policy's budgets.
    #[allow(clippy::cast_precision_loss)]
    /// `need` credits more would overrun a budget → exhausted.
    fn judge(&self, p: &ProviderPolicy, now_ms: i64, headroom: f64, need: u64) -> (bool, bool) {
        let mut exhausted = false;
        let mut over = false;
        let mut check = |budget: Option<u64>, spent: u64, period_ms: i64| {
            let Some(b) = budget else { return };
            if spent.saturating_add(need) > b || spent >= b {
                exhausted = true;
            }
            let elapsed = (now_ms.rem_euclid(period_ms)) as f64 / period_ms as f64;
            if (spent as f64) > (b as f64) * (elapsed + headroom).min(1.0 - headroom) {
                over = true;
            }
        };
        check(p.daily_credit_budget, if self.day == now_ms / DAY_MS { self.today } else { 0 }, DAY_MS);
        check(
            p.monthly_credit_budget,
            if self.month == now_ms / (30 * DAY_MS) { self.this_month } else { 0 },
            30 * DAY_MS,
        );
        (exhausted, over)
    }
}

/// Mutable state of one provider, behind one lock.
#[derive(Debug)]
struct SlotState {
    health: Health,
    head: Option<Head>,
    head_at: Option<Instant>,
    last_sighting: Option<B256>,
    lag_blocks: u64,
    lagging: bool,
    spend: Spend,
    /// The budget day a refusal was last reported for.
    budget_out: Option<i64>,
}

#[derive(Debug)]
struct Slot {
    provider: Arc<Provider>,
    policy: ProviderPolicy,
    limits: Limits,
    state: Mutex<SlotState>,
}

impl SlotState {
    /// Window figures and score parts now (selection and `status` read the same numbers).
    fn score(&self, policy: &ProviderPolicy, now: Instant, over_pace: bool) -> (WindowStats, ScoreParts) {
        let w = self.health.stats(now);
        let parts = select::parts(
            policy.weight,
            w.p95_ms,
            w.error_rate,
            w.throttle_rate,
            self.lag_blocks,
            self.health.breaker() == Breaker::HalfOpen,
            over_pace,
        );
        (w, parts)
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A poisoned lock only means another task panicked mid-update of plain counters.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What `/v1/providers` and the tests see of one provider.
#[derive(Debug, Clone)]
pub struct ProviderStatus {
    pub index: usize,
    pub name: String,
    pub tier: Tier,
    /// healthy | degraded | down | excluded
    pub state: &'static str,
    /// Why it is not healthy (empty when it is).
    pub reason: String,
    pub breaker: Breaker,
    pub primary: bool,
    pub head: Option<u64>,
    pub lag_blocks: u64,
    pub lag_secs: f64,
    pub window: WindowStats,
    pub parts: ScoreParts,
    pub score: f64,
    pub credits_today: u64,
    pub daily_credit_budget: Option<u64>,
    pub rps_limit: Option<f64>,
    pub cooldown_ms: u64,
}

#[derive(Debug)]
struct Leader {
    index: Option<usize>,
    since: Instant,
}

/// Many providers, one interface.
#[derive(Debug)]
pub struct Fleet {
    slots: Vec<Slot>,
    providers: Vec<Arc<Provider>>,
    opts: FleetOptions,
    rotation: AtomicUsize,
    head_tx: watch::Sender<Option<FleetHead>>,
    telemetry: TelemetrySink,
    chain_id: Mutex<Option<u64>>,
    leader: Mutex<Leader>,
    /// When each recent fleet-head height was first reported (for lag in seconds).
    first_seen: Mutex<BTreeMap<u64, Instant>>,
    /// A head on another branch waiting for confirmation, and since when.
    pending_fork: Mutex<Option<(B256, Instant)>>,
}

/// A provider picked for one request: holds its concurrency slot; frees a half-open probe
/// slot if dropped unfinished (a hedge loser, a cancelled call).
#[derive(Debug)]
struct Lease<'a> {
    slot: &'a Slot,
    index: usize,
    probe: bool,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.slot.lock().health.release_probe();
        }
    }
}

enum Pick<'a> {
    Got(Lease<'a>),
    Wait(Duration),
    Nothing,
}

impl Fleet {
    /// A fleet over `providers` (their `index()` must equal their position) and their policies.
    pub fn new(providers: Vec<(Arc<Provider>, ProviderPolicy)>, opts: FleetOptions, telemetry: TelemetrySink) -> Self {
        let now = Instant::now();
        let slots: Vec<Slot> = providers
            .into_iter()
            .map(|(provider, policy)| Slot {
                limits: Limits::new(policy.max_rps, policy.burst, policy.max_concurrency),
                state: Mutex::new(SlotState {
                    health: Health::new(opts.health.clone(), now),
                    head: None,
                    head_at: None,
                    last_sighting: None,
                    lag_blocks: 0,
                    lagging: false,
                    spend: Spend::default(),
                    budget_out: None,
                }),
                provider,
                policy,
            })
            .collect();
        let providers = slots.iter().map(|s| s.provider.clone()).collect();
        let (head_tx, _) = watch::channel(None);
        Self {
            slots,
            providers,
            opts,
            rotation: AtomicUsize::new(0),
            head_tx,
            telemetry,
            chain_id: Mutex::new(None),
            leader: Mutex::new(Leader { index: None, since: now }),
            first_seen: Mutex::new(BTreeMap::new()),
            pending_fork: Mutex::new(None),
        }
    }

    /// The providers, in fleet order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
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

    fn emit(&self, index: usize, kind: &'static str, reason: String) {
        let name = self.slots[index].provider.name();
        match kind {
            "breaker_open" | "wrong_chain" | "integrity_penalty" | "budget_exhausted" | "excluded" => {
                tracing::warn!(provider = name, event = kind, %reason, "provider event");
            }
            _ => tracing::info!(provider = name, event = kind, %reason, "provider event"),
        }
        self.telemetry.record(TelemetryEvent::Provider(ProviderEvent {
            ts_ms: now_ms(),
            provider: self.slots[index].provider.index(),
            kind,
            reason,
        }));
    }

    fn drain_events(&self, index: usize, st: &mut SlotState) {
        for (kind, reason) in st.health.take_events() {
            self.emit(index, kind, reason);
        }
    }

    /// Check every provider's `eth_chainId` against `expected` (or the majority when `None`).
    /// Providers on another chain are excluded for good, loudly; ones that did not answer are
    /// checked again by the head poller before first use. Returns the chain id.
    pub async fn verify_chain(&self, expected: Option<u64>) -> Result<u64, FleetError> {
        let answers = join_all(self.providers.iter().map(|p| p.chain_id(CallCtx { attempt: 1, hedged: false }))).await;
        let mut counts: Vec<(u64, usize)> = Vec::new();
        for a in answers.iter().flatten() {
            match counts.iter_mut().find(|(id, _)| id == a) {
                Some((_, c)) => *c += 1,
                None => counts.push((*a, 1)),
            }
        }
        let chain = match expected {
            Some(e) => e,
            None => counts.iter().max_by_key(|(_, c)| *c).map(|(id, _)| *id).ok_or(FleetError::NoChainId)?,
        };
        let mut any_ok = false;
        for (i, a) in answers.iter().enumerate() {
            match a {
                Ok(id) => any_ok |= self.judge_chain(i, *id, chain),
                Err(e) => {
                    tracing::warn!(provider = self.providers[i].name(), error = %e, "chain id not checked yet");
                }
            }
        }
        if !any_ok && !answers.iter().any(Result::is_err) {
            let seen = counts.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join(", ");
            return Err(FleetError::WrongChain { expected: chain, seen });
        }
        if let Ok(mut g) = self.chain_id.lock() {
            *g = Some(chain);
        }
        Ok(chain)
    }

    /// Record whether provider `i`, which answered `id`, is on chain `expected`; a provider on
    /// another chain is excluded for good, loudly. Returns whether it may be used.
    fn judge_chain(&self, i: usize, id: u64, expected: u64) -> bool {
        let ok = id == expected;
        let mut st = self.slots[i].lock();
        if ok {
            st.health.chain_ok = Some(true);
        } else {
            st.health.wrong_chain(format!("eth_chainId says {id}, the fleet follows {expected}; never used"));
        }
        self.drain_events(i, &mut st);
        ok
    }

    /// Poll every provider's head every `interval` until cancelled, publishing the fleet head.
    /// Each provider is polled on its own clock, so one slow provider never delays the others.
    pub async fn run_head_poller(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let loops = (0..self.slots.len()).map(|i| {
            let fleet = self.clone();
            let cancel = cancel.clone();
            async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = fleet.poll_one(i) => {}
                    }
                    fleet.publish_head();
                }
            }
        });
        join_all(loops).await;
    }

    /// One round of head polls (also used by tests to step deterministically).
    pub async fn poll_heads_once(&self) {
        join_all((0..self.slots.len()).map(|i| self.poll_one(i))).await;
        self.publish_head();
    }

    /// Poll provider `i`'s head. Head polls obey the same breaker, cooldown and rate limits as
    /// block fetches; an open breaker's probe is usually a head poll.
    async fn poll_one(&self, i: usize) {
        let slot = &self.slots[i];
        let chain_ok = slot.lock().health.chain_ok;
        if chain_ok == Some(false) {
            return;
        }
        if chain_ok.is_none() {
            let want = self.chain_id.lock().ok().and_then(|g| *g);
            let Some(lease) = self.lease(i, Instant::now(), method::CHAIN_ID) else { return };
            let started = Instant::now();
            let r = slot.provider.chain_id(CallCtx { attempt: 1, hedged: false }).await;
            self.settle(lease, started, r.as_ref().map(|_| ()), false);
            match r {
                Ok(id) if !self.judge_chain(i, id, want.unwrap_or(id)) => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let Some(lease) = self.lease(i, Instant::now(), method::BLOCK_BY_NUMBER) else { return };
        let started = Instant::now();
        let r = slot.provider.head(CallCtx { attempt: 1, hedged: false }).await;
        self.settle(lease, started, r.as_ref().map(|_| ()), false);
        if let Ok(h) = r {
            let new_hash = {
                let mut st = slot.lock();
                st.head = Some(h);
                st.head_at = Some(Instant::now());
                let new = st.last_sighting != Some(h.hash);
                st.last_sighting = Some(h.hash);
                new
            };
            if new_hash {
                self.telemetry.record(TelemetryEvent::Sighting(Sighting {
                    provider: slot.provider.index(),
                    number: h.number,
                    hash: h.hash,
                    seen_ms: now_ms(),
                }));
            }
        }
    }

    /// Would `credits` more overrun provider `i`'s budget? Records the first refusal.
    fn over_budget(&self, i: usize, st: &mut SlotState, credits: u64, now_ms: i64) -> bool {
        let (exhausted, _) = st.spend.judge(&self.slots[i].policy, now_ms, self.opts.budget_headroom, credits);
        // Told once per budget day, however many calls are refused.
        let day = now_ms / DAY_MS;
        if exhausted && st.budget_out != Some(day) {
            st.budget_out = Some(day);
            self.emit(
                i,
                "budget_exhausted",
                format!("{} credits spent today, {} this month; budget reached", st.spend.today, st.spend.this_month),
            );
        }
        exhausted
    }

    /// Take provider `i` for one `method` call if its health, limits and budget allow it now;
    /// the call's credits are reserved at once.
    fn lease(&self, i: usize, now: Instant, method: &str) -> Option<Lease<'_>> {
        let slot = &self.slots[i];
        let credits = u64::from(slot.provider.credits(method));
        {
            let mut st = slot.lock();
            if !st.health.admissible(now) || self.over_budget(i, &mut st, credits, now_ms()) {
                return None;
            }
        }
        let permit = slot.limits.try_acquire().ok()?;
        let mut st = slot.lock();
        let probe = st.health.admit(now);
        self.drain_events(i, &mut st);
        let probe = probe.ok()?;
        st.spend.add(now_ms(), credits);
        Some(Lease { slot, index: i, probe, done: false, _permit: permit })
    }

    /// Judge the end of a leased call: health, AIMD, credits, events.
    fn settle(&self, mut lease: Lease<'_>, started: Instant, r: Result<(), &ProviderError>, block: bool) {
        lease.done = true;
        let now = Instant::now();
        let slot = lease.slot;
        let i = lease.index;
        // (Credits were reserved when the lease was taken: a provider bills what it saw.)
        let mut rate_note = None;
        {
            let mut st = slot.lock();
            match r {
                Ok(()) => {
                    st.health.on_success(now, started.elapsed(), lease.probe, block);
                    rate_note = slot.limits.on_success(now);
                }
                Err(e) => {
                    st.health.on_failure(now, e, lease.probe);
                    if e.outcome() == crate::model::Outcome::RateLimited {
                        rate_note = slot.limits.on_throttle(now, st.health.recent_rate(now));
                    }
                }
            }
            self.drain_events(i, &mut st);
        }
        if let Some(note) = rate_note {
            self.emit(i, "rate_adjusted", note);
        }
    }

    fn publish_head(&self) {
        // Heads reported in the last few seconds by providers whose breaker is not open: only
        // these may out-vote a head (a dead provider's last head is just old news).
        let now = Instant::now();
        let mut heads: Vec<(u64, B256, usize, bool, B256)> = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let st = slot.lock();
            if st.health.chain_ok == Some(false) {
                continue;
            }
            if let Some(h) = st.head {
                let fresh = st.health.breaker() != Breaker::Open
                    && st.head_at.is_some_and(|t| now.saturating_duration_since(t) <= FRESH_HEAD);
                heads.push((h.number, h.hash, i, fresh, h.parent_hash));
            }
        }
        heads.sort_by_key(|h| std::cmp::Reverse(h.0));
        // One provider far ahead of every other fresh one is more likely lying or on another
        // network than a lone honest node: believe the runner-up.
        let best = match heads.first() {
            Some(a) => match heads.iter().skip(1).find(|h| h.3) {
                Some(b) if a.0 > b.0.saturating_add(self.opts.max_head_lead) => {
                    tracing::warn!(
                        provider = self.slots[a.2].provider.name(),
                        head = a.0,
                        next = b.0,
                        "head far ahead of every other provider; not believed"
                    );
                    Some((b.0, b.1, b.2))
                }
                _ => Some((a.0, a.1, a.2)),
            },
            None => None,
        };
        // Providers split between forks at the top height: follow the hash most of them report,
        // and on a tie keep the one already followed, so a split view does not make ingest
        // flip between branches on every poll.
        let best = best.map(|(number, hash, i)| {
            let current = *self.head_tx.borrow();
            let mut votes: Vec<(B256, usize, usize)> = Vec::new();
            for h in heads.iter().filter(|h| h.0 == number && (h.3 || h.2 == i)) {
                match votes.iter_mut().find(|v| v.0 == h.1) {
                    Some(v) => v.1 += 1,
                    None => votes.push((h.1, 1, h.2)),
                }
            }
            let keep = |v: &(B256, usize, usize)| current.is_some_and(|c| c.number == number && c.hash == v.0);
            let pick = votes
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| keep(a).cmp(&keep(b))).then_with(|| b.2.cmp(&a.2)))
                .map_or((hash, i), |v| (v.0, v.2));
            FleetHead { number, hash: pick.0, provider: self.slots[pick.1].provider.index() }
        });
        let best = self.confirm_fork_switch(best, &heads);
        if let Some(b) = best {
            let now = Instant::now();
            if let Ok(mut seen) = self.first_seen.lock() {
                seen.entry(b.number).or_insert(now);
                while seen.len() > 1024 {
                    seen.pop_first();
                }
            }
            for (i, slot) in self.slots.iter().enumerate() {
                let mut st = slot.lock();
                // No head reported yet: unknown, not lagging (start-up would flap otherwise).
                let Some(own) = st.head.map(|h| h.number) else { continue };
                st.lag_blocks = b.number.saturating_sub(own);
                // Lagging means behind by more than the limit for longer than a grace period:
                // heads are polled one provider at a time, so right after one provider sees a
                // burst of new blocks the others are "behind" only until their next poll.
                let first_beyond = own.saturating_add(self.opts.max_lag_blocks).saturating_add(1);
                let behind_long = self.first_seen.lock().ok().is_some_and(|m| {
                    m.range(first_beyond..).next().is_some_and(|(_, t)| now.saturating_duration_since(*t) >= LAG_GRACE)
                });
                let lagging = if st.lagging {
                    st.lag_blocks > self.opts.max_lag_blocks
                } else {
                    st.lag_blocks > self.opts.max_lag_blocks && behind_long
                };
                if lagging != st.lagging {
                    st.lagging = lagging;
                    let (kind, reason) = if lagging {
                        (
                            "excluded",
                            format!(
                                "lagging {} blocks behind the fleet head (max {})",
                                st.lag_blocks, self.opts.max_lag_blocks
                            ),
                        )
                    } else {
                        ("readmitted", format!("caught up: {} blocks behind", st.lag_blocks))
                    };
                    self.emit(i, kind, reason);
                }
            }
        }
        self.head_tx.send_if_modified(|cur| {
            if *cur == best {
                false
            } else {
                *cur = best;
                true
            }
        });
    }

    /// A new fleet head that does not extend the current one (another branch at the same or the
    /// next height) is believed only when most fresh providers report it, when it is at least
    /// two blocks higher, or when it has stood for `FORK_CONFIRM`. Until then the current head
    /// stays: one provider briefly ahead on a minority fork must not drag ingest back and forth.
    fn confirm_fork_switch(
        &self,
        best: Option<FleetHead>,
        heads: &[(u64, B256, usize, bool, B256)],
    ) -> Option<FleetHead> {
        let current = *self.head_tx.borrow();
        let (Some(cur), Some(new)) = (current, best) else { return best };
        let parent = heads.iter().find(|h| h.1 == new.hash).map(|h| h.4);
        let extends = new.hash == cur.hash
            || (new.number == cur.number + 1 && parent == Some(cur.hash))
            || new.number >= cur.number + 2;
        let mut pending = self.pending_fork.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if extends {
            *pending = None;
            return best;
        }
        let fresh = heads.iter().filter(|h| h.3).count();
        let agree = heads.iter().filter(|h| h.3 && h.1 == new.hash).count();
        let since = match *pending {
            Some((h, t)) if h == new.hash => t,
            _ => {
                let now = Instant::now();
                *pending = Some((new.hash, now));
                now
            }
        };
        if agree * 2 > fresh || since.elapsed() >= FORK_CONFIRM {
            *pending = None;
            best
        } else {
            current
        }
    }

    fn backoff(&self, pass: u32) -> Duration {
        let base = self.opts.backoff_base.saturating_mul(1 << pass.min(10));
        let capped = base.min(self.opts.backoff_max);
        // Full jitter keeps retries from many workers from lining up.
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Pick the provider for one request: eligible ones in strategy order (lagging ones last),
    /// the first with a free slot and a token wins.
    fn pick(&self, method: &str, calls: u64, need: Option<u64>, skip: &[usize], patient: bool) -> Pick<'_> {
        let now = Instant::now();
        let ms = now_ms();
        let mut cands = Vec::new();
        let mut laggards = Vec::new();
        let mut healthy_but_short = Vec::new();
        let fleet_head = *self.head_tx.borrow();
        for (i, slot) in self.slots.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            let mut st = slot.lock();
            if !st.health.admissible(now) {
                continue;
            }
            let credits = u64::from(slot.provider.credits(method)).saturating_mul(calls);
            if self.over_budget(i, &mut st, credits, ms) {
                continue;
            }
            let (_, over_pace) = st.spend.judge(&slot.policy, ms, self.opts.budget_headroom, credits);
            let (_, parts) = st.score(&slot.policy, now, over_pace);
            let price = f64::from(slot.provider.credits(method)) * slot.policy.price_per_million / 1e6;
            // Never ask a provider for a height above the head it reported.
            if let Some(n) = need
                && st.head.is_none_or(|h| h.number < n)
            {
                healthy_but_short.push((i, parts.score(), price, over_pace));
                continue;
            }
            let c = Candidate { index: i, tier: slot.policy.tier, parts, price, over_pace };
            // On another fork at the fleet head's height: ask only when nobody else can serve.
            let off_fork = fleet_head.zip(st.head).is_some_and(|(f, h)| h.number == f.number && h.hash != f.hash);
            if st.lagging || off_fork { laggards.push(c) } else { cands.push(c) }
        }
        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut order = select::order(self.opts.strategy, cands, rotation);
        if self.opts.strategy == Strategy::Best {
            // The primary has not reported this height yet but is clearly better than whoever
            // has: at the tip it will within a poll, so wait a moment rather than hand the
            // block to a slow provider.
            let leader = self.leader.lock().ok().and_then(|l| l.index);
            if patient
                && let Some(&(_, lead_score, _, _)) = healthy_but_short.iter().find(|s| Some(s.0) == leader)
                && order.first().is_none_or(|c| c.parts.score() * (1.0 + self.opts.switch_margin) < lead_score)
            {
                return Pick::Wait(Duration::from_millis(10));
            }
            let short: Vec<usize> = healthy_but_short.iter().map(|s| s.0).collect();
            self.keep_sticky(&mut order, &short, now);
        }
        // Cheapest: a cheaper provider within its budget pace that just has not reported this
        // height yet is worth the same short wait.
        if self.opts.strategy == Strategy::Cheapest
            && patient
            && let Some(first) = order.first()
            && healthy_but_short.iter().any(|s| !s.3 && s.2 < first.price)
        {
            return Pick::Wait(Duration::from_millis(10));
        }
        order.extend(select::order(self.opts.strategy, laggards, rotation));
        let mut wait: Option<Duration> = None;
        for c in order {
            match self.slots[c.index].limits.try_acquire() {
                Ok(permit) => {
                    let slot = &self.slots[c.index];
                    let mut st = slot.lock();
                    let admitted = st.health.admit(now);
                    self.drain_events(c.index, &mut st);
                    if let Ok(probe) = admitted {
                        let credits = u64::from(slot.provider.credits(method)).saturating_mul(calls);
                        st.spend.add(ms, credits);
                        return Pick::Got(Lease { slot, index: c.index, probe, done: false, _permit: permit });
                    }
                }
                Err(LimitWait::Rate(d)) => wait = Some(wait.map_or(d, |w| w.min(d))),
                Err(LimitWait::Busy) => {
                    let d = Duration::from_millis(5);
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                }
            }
        }
        wait.map_or(Pick::Nothing, Pick::Wait)
    }

    /// Best strategy: keep the current primary first unless a candidate is clearly better (and
    /// the primary has held for a while) or the primary is no longer eligible at all.
    fn keep_sticky(&self, order: &mut [Candidate], short: &[usize], now: Instant) {
        let Some(best) = order.first().copied() else { return };
        let mut l = self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let switch = match l.index {
            Some(cur) if cur == best.index => None,
            Some(cur) => match order.iter().position(|c| c.index == cur) {
                Some(pos) => {
                    let cur_c = order[pos];
                    let clearly = best.parts.score() > cur_c.parts.score() * (1.0 + self.opts.switch_margin)
                        && now.saturating_duration_since(l.since) >= self.opts.switch_min_interval;
                    if clearly {
                        Some(format!(
                            "score {:.3} beats primary {}'s {:.3} by more than {:.0}%",
                            best.parts.score(),
                            self.slots[cur].provider.name(),
                            cur_c.parts.score(),
                            self.opts.switch_margin * 100.0
                        ))
                    } else {
                        order[..=pos].rotate_right(1);
                        None
                    }
                }
                // Still healthy, just has not seen this height yet: serve elsewhere, stay primary.
                None if short.contains(&cur) => None,
                None => Some(format!("primary {} is no longer eligible", self.slots[cur].provider.name())),
            },
            None => Some("first primary".into()),
        };
        if let Some(reason) = switch {
            l.index = Some(best.index);
            l.since = now;
            drop(l);
            self.emit(best.index, "primary_switch", reason);
        }
    }

    /// The wait before hedging: the primary's p95 (or the best p95 known), clamped.
    fn hedge_delay(&self) -> Duration {
        let now = Instant::now();
        let leader = self.leader.lock().ok().and_then(|l| l.index);
        let p95 = |i: usize| self.slots[i].lock().health.stats(now).p95_ms;
        // No primary (round-robin, priority…): the median provider's p95 — robust to one slow
        // provider and to one suspiciously fast one.
        let median = || {
            let mut v: Vec<f64> = (0..self.slots.len()).filter_map(p95).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let ms = leader.and_then(p95).or_else(median).unwrap_or(250.0);
        Duration::try_from_secs_f64(ms / 1000.0)
            .unwrap_or(self.opts.hedge_max)
            .clamp(self.opts.hedge_min, self.opts.hedge_max)
    }

    /// Run `op` on one leased provider and judge the result.
    async fn attempt<T, Fut>(&self, lease: Lease<'_>, fut: Fut) -> Result<T, (usize, ProviderError)>
    where
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let i = lease.index;
        let started = Instant::now();
        let r = fut.await;
        self.settle(lease, started, r.as_ref().map(|_| ()), true);
        r.map_err(|e| (i, e))
    }

    /// Start on `first`; if it has not answered after the hedge delay, also ask the next best
    /// provider. The first success wins; the loser is dropped (recorded as `cancelled`, not as
    /// an error, and its health is not judged).
    async fn hedged<'a, T, F, Fut>(
        &'a self,
        first: Lease<'a>,
        method: &'static str,
        need: Option<u64>,
        op: &F,
        attempt: u32,
    ) -> Result<T, (usize, ProviderError)>
    where
        F: Fn(Arc<Provider>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let i1 = first.index;
        let p1 = self.slots[i1].provider.clone();
        let f1 = self.attempt(first, op(p1, CallCtx { attempt, hedged: false }));
        tokio::pin!(f1);
        tokio::select! {
            r = &mut f1 => return r,
            () = tokio::time::sleep(self.hedge_delay()) => {}
        }
        // The next provider may not have reported this height yet: keep looking until it has,
        // or until the first answers.
        let second = loop {
            if let Pick::Got(second) = self.pick(method, 1, need, &[i1], false) {
                break second;
            }
            tokio::select! {
                r = &mut f1 => return r,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        };
        let p2 = second.slot.provider.clone();
        let f2 = self.attempt(second, op(p2, CallCtx { attempt: attempt + 1, hedged: true }));
        tokio::pin!(f2);
        tokio::select! {
            r = &mut f1 => match r {
                Ok(v) => Ok(v),
                Err(_) => f2.await,
            },
            r = &mut f2 => match r {
                Ok(v) => Ok(v),
                Err(_) => f1.await,
            },
        }
    }

    /// Run `op` on providers in selection order until one succeeds, within the attempt budget
    /// and the request deadline.
    async fn with_failover<T, F, Fut>(
        &self,
        what: impl Fn() -> String,
        method: &'static str,
        need: Option<u64>,
        hedge: bool,
        op: F,
    ) -> Result<T, FleetError>
    where
        F: Fn(Arc<Provider>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let started = Instant::now();
        let deadline = started + self.opts.request_deadline;
        let mut skip: Vec<usize> = Vec::new();
        let mut attempt = 0u32;
        let mut pass = 0u32;
        let mut last =
            String::from("no provider is eligible (none has reported a head that high, or all are excluded)");
        loop {
            match self.pick(method, 1, need, &skip, started.elapsed() < LEADER_PATIENCE) {
                Pick::Got(lease) => {
                    attempt += 1;
                    let r = if hedge {
                        self.hedged(lease, method, need, &op, attempt).await
                    } else {
                        let p = lease.slot.provider.clone();
                        self.attempt(lease, op(p, CallCtx { attempt, hedged: false })).await
                    };
                    match r {
                        Ok(v) => return Ok(v),
                        Err((i, e)) => {
                            tracing::debug!(provider = self.providers[i].name(), error = %e, what = %what(), "attempt failed");
                            last = format!("{}: {e}", self.providers[i].name());
                            skip.push(i);
                        }
                    }
                    if attempt >= self.opts.max_attempts {
                        return Err(FleetError::Exhausted { what: what(), attempts: attempt, last });
                    }
                }
                Pick::Wait(d) => {
                    tokio::time::sleep(d.clamp(Duration::from_millis(1), Duration::from_millis(100))).await
                }
                Pick::Nothing => {
                    if Instant::now() >= deadline {
                        return Err(FleetError::Exhausted { what: what(), attempts: attempt, last });
                    }
                    skip.clear();
                    tokio::time::sleep(self.backoff(pass)).await;
                    pass += 1;
                }
            }
        }
    }

    /// Is `n` at the tip (worth hedging)?
    fn at_tip(&self, n: u64) -> bool {
        self.head_tx.borrow().is_some_and(|h| n + 2 >= h.number)
    }

    /// One block by number, from whichever provider serves it first (hedged at the tip).
    #[tracing::instrument(name = "fetch", skip(self), fields(height = number))]
    pub async fn block_by_number(&self, number: u64) -> Result<Block, FleetError> {
        let opts = self.opts.decode;
        let hedge = self.opts.hedge && self.at_tip(number);
        self.with_failover(
            || format!("block {number}"),
            method::BLOCK_BY_NUMBER,
            Some(number),
            hedge,
            |p, ctx| async move { p.block_by_number(number, opts, ctx).await },
        )
        .await
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
        self.blocks_by_number_avoiding(numbers, &[]).await
    }

    /// Like [`blocks_by_number`](Self::blocks_by_number), but asks the providers in `avoid`
    /// (fleet indexes) only after every other one failed or was ineligible.
    #[tracing::instrument(name = "fetch", skip_all, fields(from = numbers.first(), to = numbers.last()))]
    pub async fn blocks_by_number_avoiding(&self, numbers: &[u64], avoid: &[u16]) -> Result<Vec<Block>, FleetError> {
        let opts = self.opts.decode;
        let started = Instant::now();
        let deadline = started + self.opts.request_deadline;
        let mut got: Vec<Option<Block>> = vec![None; numbers.len()];
        let mut skip: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| avoid.contains(&s.provider.index()))
            .map(|(i, _)| i)
            .collect();
        let mut attempt = 0u32;
        let mut pass = 0u32;
        let mut last =
            String::from("no provider is eligible (none has reported a head that high, or all are excluded)");
        loop {
            let missing: Vec<usize> = (0..numbers.len()).filter(|&k| got[k].is_none()).collect();
            let Some(&first_missing) = missing.first() else {
                return Ok(got.into_iter().flatten().collect());
            };
            let need = missing.iter().map(|&k| numbers[k]).max();
            let exhausted = |attempts: u32, last: &str| FleetError::Exhausted {
                what: format!("block {}", numbers[first_missing]),
                attempts,
                last: last.to_string(),
            };
            let calls = missing.len() as u64;
            match self.pick(method::BLOCK_BY_NUMBER, calls, need, &skip, started.elapsed() < LEADER_PATIENCE) {
                Pick::Got(lease) => {
                    attempt += 1;
                    let i = lease.index;
                    let want: Vec<u64> = missing.iter().map(|&k| numbers[k]).collect();
                    let started = Instant::now();
                    let results =
                        lease.slot.provider.blocks_by_number(&want, opts, CallCtx { attempt, hedged: false }).await;
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
                        last = format!("{}: {e}", self.providers[i].name());
                        skip.push(i);
                        if attempt >= self.opts.max_attempts {
                            return Err(exhausted(attempt, &last));
                        }
                    }
                }
                Pick::Wait(d) => {
                    tokio::time::sleep(d.clamp(Duration::from_millis(1), Duration::from_millis(100))).await
                }
                Pick::Nothing => {
                    if Instant::now() >= deadline {
                        return Err(exhausted(attempt, &last));
                    }
                    skip.clear();
                    tokio::time::sleep(self.backoff(pass)).await;
                    pass += 1;
                }
            }
        }
    }

    /// Start the budgets from what was already spent (after a restart): `today` credits since
    /// the UTC day began and `this_month` since the 30-day period began.
    pub fn seed_spend(&self, index: u16, today: u64, this_month: u64) {
        let Some(slot) = self.slots.iter().find(|s| s.provider.index() == index) else { return };
        let now = now_ms();
        let mut st = slot.lock();
        st.spend.roll(now);
        st.spend.today = today;
        st.spend.this_month = this_month;
    }

    /// Start of the current budget day and month (ms), as the budgets count them.
    pub fn budget_periods(now_ms: i64) -> (i64, i64) {
        (now_ms - now_ms.rem_euclid(DAY_MS), now_ms - now_ms.rem_euclid(30 * DAY_MS))
    }

    /// Every provider's state, score and figures now.
    pub fn status(&self) -> Vec<ProviderStatus> {
        let now = Instant::now();
        let ms = now_ms();
        let leader = self.leader.lock().ok().and_then(|l| l.index);
        let fleet_head = *self.head_tx.borrow();
        self.slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let st = slot.lock();
                let (exhausted, over_pace) = st.spend.judge(&slot.policy, ms, self.opts.budget_headroom, 0);
                let breaker = st.health.breaker();
                let (w, parts) = st.score(&slot.policy, now, over_pace);
                let cooldown = st.health.cooldown_until(now);
                let lag_secs = match (fleet_head, st.head) {
                    (Some(f), Some(h)) if h.number < f.number => self
                        .first_seen
                        .lock()
                        .ok()
                        .and_then(|m| m.get(&(h.number + 1)).map(|t| now.saturating_duration_since(*t).as_secs_f64()))
                        .unwrap_or(0.0),
                    _ => 0.0,
                };
                let (state, reason) = if st.health.chain_ok == Some(false) {
                    ("excluded", "wrong chain".to_string())
                } else if exhausted {
                    ("excluded", "credit budget spent".to_string())
                } else if breaker == Breaker::Open {
                    ("down", "circuit breaker open".to_string())
                } else if let Some(t) = cooldown {
                    ("excluded", format!("cooling down for {} ms", t.saturating_duration_since(now).as_millis()))
                } else if st.lagging {
                    ("excluded", format!("lagging {} blocks", st.lag_blocks))
                } else if breaker == Breaker::HalfOpen || w.error_rate > 0.05 || w.throttle_rate > 0.05 {
                    (
                        "degraded",
                        format!(
                            "error rate {:.1}%, throttle rate {:.1}%",
                            w.error_rate * 100.0,
                            w.throttle_rate * 100.0
                        ),
                    )
                } else {
                    ("healthy", String::new())
                };
                ProviderStatus {
                    index: i,
                    name: slot.provider.name().to_string(),
                    tier: slot.policy.tier,
                    state,
                    reason,
                    breaker,
                    primary: leader == Some(i),
                    head: st.head.map(|h| h.number),
                    lag_blocks: st.lag_blocks,
                    lag_secs,
                    window: w,
                    parts,
                    score: parts.score(),
                    credits_today: if st.spend.day == ms / DAY_MS { st.spend.today } else { 0 },
                    daily_credit_budget: slot.policy.daily_credit_budget,
                    rps_limit: slot.limits.current_rps(),
                    cooldown_ms: cooldown
                        .map_or(0, |t| u64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_exhaust_and_pace() {
        let p = ProviderPolicy { daily_credit_budget: Some(1000), ..ProviderPolicy::default() };
        let mut s = Spend::default();
        // six hours into a day: pace allows 25% + 10% headroom
        let t = 100 * DAY_MS + DAY_MS / 4;
        s.add(t, 300);
        assert_eq!(s.judge(&p, t, 0.1, 0), (false, false));
        s.add(t, 100);
        assert_eq!(s.judge(&p, t, 0.1, 0), (false, true));
        // a call that would overrun the budget is refused before it is made
        assert!(s.judge(&p, t, 0.1, 700).0);
        s.add(t, 600);
        assert_eq!(s.judge(&p, t, 0.1, 0), (true, true));
        // a new day starts from zero
        assert_eq!(s.judge(&p, t + DAY_MS, 0.1, 0), (false, false));
    }
}
