//! The fleet: many providers behind one interface — head polling, selection, failover, retries.
//!
//! Selection here is deliberately simple and predictable: rotate through providers that are
//! on the right chain, not cooling down, and whose reported head covers the height asked for;
//! on failure move to the next one, with capped exponential backoff between full passes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use futures::future::join_all;
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::{Block, Head, Sighting, TelemetryEvent, TelemetrySink};
use crate::provider::wire::DecodeOptions;
use crate::provider::{CallCtx, Provider, ProviderError};
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

/// Tunables for retries and cooldowns.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub decode: DecodeOptions,
    /// Attempts per request across all providers.
    pub max_attempts: u32,
    /// First backoff after a full pass of failures; doubles up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failures before a provider is parked.
    pub park_after_failures: u32,
    /// Cooldown after a 429 that did not say how long (dshackle parks for 60 s; we start lower
    /// and grow with repeats).
    pub default_throttle_cooldown: Duration,
    /// Upper clamp for `Retry-After` (alloy clamps at 5 min).
    pub max_retry_after: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            decode: DecodeOptions { full_transactions: true, verify_header_hash: true },
            max_attempts: 8,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            park_after_failures: 3,
            default_throttle_cooldown: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(300),
        }
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

#[derive(Debug, Default)]
struct ProviderState {
    head: Option<Head>,
    head_seen: Option<Instant>,
    consecutive_failures: u32,
    parked_until: Option<Instant>,
    /// `Some(false)`: on the wrong chain, never used. `None`: not yet checked.
    chain_ok: Option<bool>,
    last_sighting: Option<B256>,
}

/// Many providers, one interface.
#[derive(Debug)]
pub struct Fleet {
    providers: Vec<Arc<Provider>>,
    state: Vec<Mutex<ProviderState>>,
    opts: FleetOptions,
    rr: AtomicUsize,
    head_tx: watch::Sender<Option<FleetHead>>,
    telemetry: TelemetrySink,
    chain_id: Mutex<Option<u64>>,
}

impl Fleet {
    /// A fleet over `providers` (their `index()` must equal their position).
    pub fn new(providers: Vec<Arc<Provider>>, opts: FleetOptions, telemetry: TelemetrySink) -> Self {
        let state = providers.iter().map(|_| Mutex::new(ProviderState::default())).collect();
        let (head_tx, _) = watch::channel(None);
        Self { providers, state, opts, rr: AtomicUsize::new(0), head_tx, telemetry, chain_id: Mutex::new(None) }
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

    fn with_state<R>(&self, i: usize, f: impl FnOnce(&mut ProviderState) -> R) -> R {
        // A poisoned lock only means another task panicked mid-update of plain counters.
        let mut g = match self.state[i].lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
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
        if !ok {
            tracing::error!(
                provider = self.providers[i].name(),
                chain_id = id,
                expected,
                "provider is on the wrong chain; excluded"
            );
        }
        self.with_state(i, |s| s.chain_ok = Some(ok));
        ok
    }

    /// Poll every provider's head every `interval` until cancelled, publishing the fleet head.
    pub async fn run_head_poller(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.poll_heads_once().await;
        }
    }

    /// One round of head polls (also used by tests to step deterministically).
    pub async fn poll_heads_once(&self) {
        let polls = self.providers.iter().enumerate().map(|(i, p)| async move {
            if self.with_state(i, |s| s.chain_ok) == Some(false) {
                return;
            }
            if self.with_state(i, |s| s.chain_ok.is_none()) {
                let want = self.chain_id.lock().ok().and_then(|g| *g);
                match p.chain_id(CallCtx { attempt: 1, hedged: false }).await {
                    Ok(id) if !self.judge_chain(i, id, want.unwrap_or(id)) => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            match p.head(CallCtx { attempt: 1, hedged: false }).await {
                Ok(h) => {
                    let new_hash = self.with_state(i, |s| {
                        s.head = Some(h);
                        s.head_seen = Some(Instant::now());
                        let new = s.last_sighting != Some(h.hash);
                        s.last_sighting = Some(h.hash);
                        new
                    });
                    if new_hash {
                        self.telemetry.record(TelemetryEvent::Sighting(Sighting {
                            provider: p.index(),
                            number: h.number,
                            hash: h.hash,
                            seen_ms: now_ms(),
                        }));
                    }
                }
                Err(e) => {
                    self.note_failure(i, &e);
                }
            }
        });
        join_all(polls).await;
        self.publish_head();
    }

    fn publish_head(&self) {
        let mut best: Option<FleetHead> = None;
        for i in 0..self.providers.len() {
            let h = self.with_state(i, |s| if s.chain_ok == Some(false) { None } else { s.head });
            if let Some(h) = h
                && best.is_none_or(|b| h.number > b.number)
            {
                best = Some(FleetHead { number: h.number, hash: h.hash, provider: self.providers[i].index() });
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

    fn note_failure(&self, i: usize, e: &ProviderError) {
        let opts = &self.opts;
        self.with_state(i, |s| {
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            let throttled = e.outcome() == crate::model::Outcome::RateLimited;
            let park = if let Some(ra) = e.retry_after() {
                Some(ra.min(opts.max_retry_after))
            } else if throttled {
                Some(opts.default_throttle_cooldown)
            } else if s.consecutive_failures >= opts.park_after_failures {
                let exp = s.consecutive_failures - opts.park_after_failures;
                Some(Duration::from_millis(500u64.saturating_mul(1 << exp.min(6))).min(Duration::from_secs(30)))
            } else {
                None
            };
            if let Some(d) = park {
                s.parked_until = Some(Instant::now() + d);
            }
        });
    }

    fn note_success(&self, i: usize) {
        self.with_state(i, |s| {
            s.consecutive_failures = 0;
            s.parked_until = None;
        });
    }

    /// Providers worth asking for height `need` (None: any height), best first, rotating.
    fn candidates(&self, need: Option<u64>, exclude: &[usize]) -> Vec<usize> {
        let n = self.providers.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut parked = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            if exclude.contains(&i) {
                continue;
            }
            let (ok, head, parked_until, fails) =
                self.with_state(i, |s| (s.chain_ok != Some(false), s.head, s.parked_until, s.consecutive_failures));
            if !ok {
                continue;
            }
            // Never ask a provider for a height above the head it reported.
            if let (Some(need), Some(h)) = (need, head)
                && h.number < need
            {
                continue;
            }
            if parked_until.is_some_and(|t| t > now) {
                parked.push((parked_until, i));
            } else {
                ready.push((fails, i));
            }
        }
        ready.sort_by_key(|(f, _)| *f);
        parked.sort();
        ready.into_iter().map(|(_, i)| i).chain(parked.into_iter().map(|(_, i)| i)).collect()
    }

    fn backoff(&self, pass: u32) -> Duration {
        let base = self.opts.backoff_base.saturating_mul(1 << pass.min(10));
        let capped = base.min(self.opts.backoff_max);
        // Full jitter keeps retries from many workers from lining up.
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Run `op` on providers in selection order until one succeeds.
    async fn with_failover<T, F, Fut>(
        &self,
        what: impl Fn() -> String,
        need: Option<u64>,
        op: F,
    ) -> Result<T, FleetError>
    where
        F: Fn(Arc<Provider>, CallCtx) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 0u32;
        let mut pass = 0u32;
        let mut last = String::from("no provider has reported a head that high yet");
        loop {
            let order = self.candidates(need, &[]);
            if order.is_empty() {
                // Nobody covers this height yet: wait for head polls to catch up.
                attempt += 1;
                if attempt >= self.opts.max_attempts {
                    return Err(FleetError::Exhausted { what: what(), attempts: attempt, last });
                }
                tokio::time::sleep(self.backoff(pass)).await;
                pass += 1;
                continue;
            }
            for i in order {
                attempt += 1;
                let p = self.providers[i].clone();
                match op(p, CallCtx { attempt, hedged: false }).await {
                    Ok(v) => {
                        self.note_success(i);
                        return Ok(v);
                    }
                    Err(e) => {
                        tracing::debug!(provider = self.providers[i].name(), error = %e, what = %what(), "attempt failed");
                        self.note_failure(i, &e);
                        last = format!("{}: {e}", self.providers[i].name());
                    }
                }
                if attempt >= self.opts.max_attempts {
                    return Err(FleetError::Exhausted { what: what(), attempts: attempt, last });
                }
            }
            tokio::time::sleep(self.backoff(pass)).await;
            pass += 1;
        }
    }

    /// One block by number, from whichever provider serves it first.
    pub async fn block_by_number(&self, number: u64) -> Result<Block, FleetError> {
        let opts = self.opts.decode;
        self.with_failover(
            || format!("block {number}"),
            Some(number),
            |p, ctx| async move { p.block_by_number(number, opts, ctx).await },
        )
        .await
    }

    /// One block by hash (reorg walk-back).
    pub async fn block_by_hash(&self, hash: B256) -> Result<Block, FleetError> {
        let opts = self.opts.decode;
        self.with_failover(
            || format!("block {hash}"),
            None,
            |p, ctx| async move { p.block_by_hash(hash, opts, ctx).await },
        )
        .await
    }

    /// Blocks `numbers` (ascending), batched per provider; heights a provider failed are asked of
    /// the next one. Returns them in order, or the error for the first height nobody served.
    pub async fn blocks_by_number(&self, numbers: &[u64]) -> Result<Vec<Block>, FleetError> {
        let opts = self.opts.decode;
        let mut got: Vec<Option<Block>> = vec![None; numbers.len()];
        let mut attempt = 0u32;
        let mut pass = 0u32;
        let mut last = String::from("no provider has reported a head that high yet");
        loop {
            let missing: Vec<usize> = (0..numbers.len()).filter(|&k| got[k].is_none()).collect();
            let Some(&first_missing) = missing.first() else {
                return Ok(got.into_iter().flatten().collect());
            };
            let need = missing.iter().map(|&k| numbers[k]).max();
            let order = self.candidates(need, &[]);
            if let Some(&i) = order.first() {
                attempt += 1;
                let want: Vec<u64> = missing.iter().map(|&k| numbers[k]).collect();
                let results = self.providers[i].blocks_by_number(&want, opts, CallCtx { attempt, hedged: false }).await;
                let mut any_err = None;
                for (k, r) in missing.iter().zip(results) {
                    match r {
                        Ok(b) => got[*k] = Some(b),
                        Err(e) => any_err = Some(e),
                    }
                }
                match any_err {
                    None => self.note_success(i),
                    Some(e) => {
                        self.note_failure(i, &e);
                        last = format!("{}: {e}", self.providers[i].name());
                    }
                }
            } else {
                attempt += 1;
            }
            if got.iter().all(Option::is_some) {
                return Ok(got.into_iter().flatten().collect());
            }
            if attempt >= self.opts.max_attempts {
                return Err(FleetError::Exhausted {
                    what: format!("block {}", numbers[first_missing]),
                    attempts: attempt,
                    last,
                });
            }
            if order.len() <= 1 || attempt.is_multiple_of(u32::try_from(order.len()).unwrap_or(1)) {
                tokio::time::sleep(self.backoff(pass)).await;
                pass += 1;
            }
        }
    }
}
