//! One provider's health as the fleet sees it: a rolling window of outcomes, the circuit
//! breaker, cooldowns (`Retry-After`, bad keys, budgets), and the integrity memory (forged or
//! inconsistent blocks, remembered far longer than the window).
//!
//! Pure state: every method takes `now`, so the rules are unit-tested without sleeping. State
//! changes worth telling an operator are queued as events the fleet drains and records.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::model::{EventKind, Outcome};
use crate::provider::ProviderError;

/// Knobs of the health rules (defaults come from `RoutingConfig`, documented in docs/configuration.md).
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Rolling window for latency percentiles and error/throttle rates.
    pub window: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// Error rate over the window that opens the breaker…
    pub breaker_error_rate: f64,
    /// …once the window holds at least this many samples.
    pub breaker_min_samples: usize,
    /// How long an open breaker stays open before one probe is let through.
    pub breaker_cooldown: Duration,
    /// Probe successes in a row that close a half-open breaker.
    pub breaker_close_successes: u32,
    /// Cooldown after a throttle that did not say how long.
    pub default_throttle_cooldown: Duration,
    /// Upper clamp for any `Retry-After` (alloy clamps at 5 min).
    pub max_retry_after: Duration,
    /// Cooldown after 401/403 (a bad key does not fix itself quickly).
    pub auth_cooldown: Duration,
    /// Forged or inconsistent blocks within the window that open the breaker.
    pub integrity_strikes: usize,
    /// How long a forged or inconsistent block weighs on the score (fading linearly to 0).
    pub integrity_memory: Duration,
}

/// Circuit breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    Closed,
    Open,
    HalfOpen,
}

impl Breaker {
    /// Name used in events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Latency in ms, and whether it was a block fetch (head polls are much smaller answers).
    Success(u32, bool),
    Error,
    Throttle,
}

/// Why a provider may not take a request right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Blocked {
    WrongChain,
    Cooldown(Instant),
    BreakerOpen(Instant),
    ProbeBusy,
}

/// Rolling-window figures (successes only for latency).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WindowStats {
    pub samples: usize,
    pub successes: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Errors / (successes + errors): throttles and cancelled hedge losers are not errors.
    pub error_rate: f64,
    /// Throttles / all samples.
    pub throttle_rate: f64,
}

/// The health of one provider.
#[derive(Debug)]
pub(super) struct Health {
    opts: HealthOptions,
    samples: VecDeque<(Instant, Kind)>,
    consecutive_failures: u32,
    breaker: Breaker,
    breaker_until: Instant,
    probe_in_flight: bool,
    probe_successes: u32,
    cooldown_until: Option<Instant>,
    strikes: VecDeque<Instant>,
    /// Every forged or inconsistent block within `integrity_memory` (newest last).
    forgeries: VecDeque<Instant>,
    /// `Some(false)`: on the wrong chain, never used. `None`: not checked yet.
    pub(super) chain_ok: Option<bool>,
    events: Vec<(EventKind, String)>,
}

/// Most forgeries remembered (the score part saturates long before).
const MAX_FORGERIES: usize = 64;

/// Most samples kept, whatever the window (bounds memory at high request rates).
const MAX_SAMPLES: usize = 4096;

impl Health {
    pub(super) fn new(opts: HealthOptions, now: Instant) -> Self {
        Self {
            opts,
            samples: VecDeque::new(),
            consecutive_failures: 0,
            breaker: Breaker::Closed,
            breaker_until: now,
            probe_in_flight: false,
            probe_successes: 0,
            cooldown_until: None,
            strikes: VecDeque::new(),
            forgeries: VecDeque::new(),
            chain_ok: None,
            events: Vec::new(),
        }
    }

    /// Events queued since the last call: `(kind, reason)`.
    pub(super) fn take_events(&mut self) -> Vec<(EventKind, String)> {
        std::mem::take(&mut self.events)
    }

    pub(super) fn breaker(&self) -> Breaker {
        self.breaker
    }

    /// When the current cooldown ends, if one is running.
    pub(super) fn cooldown_until(&self, now: Instant) -> Option<Instant> {
        self.cooldown_until.filter(|t| *t > now)
    }

    /// May this provider take a request now? `Ok(true)` means the request is the breaker's
    /// half-open probe (the caller must report its end with `probe = true`).
    pub(super) fn admit(&mut self, now: Instant) -> Result<bool, Blocked> {
        if self.chain_ok == Some(false) {
            return Err(Blocked::WrongChain);
        }
        if let Some(t) = self.cooldown_until(now) {
            return Err(Blocked::Cooldown(t));
        }
        match self.breaker {
            Breaker::Closed => Ok(false),
            Breaker::Open if now < self.breaker_until => Err(Blocked::BreakerOpen(self.breaker_until)),
            Breaker::Open => {
                self.breaker = Breaker::HalfOpen;
                self.probe_successes = 0;
                self.events.push((EventKind::BreakerHalfOpen, "cooldown over; probing".into()));
                self.probe_in_flight = true;
                Ok(true)
            }
            Breaker::HalfOpen if self.probe_in_flight => Err(Blocked::ProbeBusy),
            Breaker::HalfOpen => {
                self.probe_in_flight = true;
                Ok(true)
            }
        }
    }

    /// Would [`admit`](Self::admit) say yes, without taking the probe slot?
    pub(super) fn admissible(&self, now: Instant) -> bool {
        self.chain_ok != Some(false)
            && self.cooldown_until(now).is_none()
            && match self.breaker {
                Breaker::Closed => true,
                Breaker::Open => now >= self.breaker_until,
                Breaker::HalfOpen => !self.probe_in_flight,
            }
    }

    /// A probe was abandoned (a hedge loser, a cancelled call): free the slot, judge nothing.
    pub(super) fn release_probe(&mut self) {
        self.probe_in_flight = false;
    }

    fn push(&mut self, now: Instant, kind: Kind) {
        self.samples.push_back((now, kind));
        self.prune(now);
    }

    fn prune(&mut self, now: Instant) {
        while self.samples.len() > MAX_SAMPLES
            || self.samples.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.opts.window)
        {
            self.samples.pop_front();
        }
        while self.strikes.front().is_some_and(|t| now.saturating_duration_since(*t) > self.opts.window) {
            self.strikes.pop_front();
        }
        while self.forgeries.front().is_some_and(|t| now.saturating_duration_since(*t) > self.opts.integrity_memory) {
            self.forgeries.pop_front();
        }
    }

    /// A call succeeded after `latency`.
    /// A call succeeded after `latency`; `block` marks block fetches, whose latency is what
    /// selection scores (a head poll is a tiny answer and says little about serving blocks).
    pub(super) fn on_success(&mut self, now: Instant, latency: Duration, probe: bool, block: bool) {
        let ms = u32::try_from(latency.as_millis()).unwrap_or(u32::MAX);
        self.push(now, Kind::Success(ms, block));
        self.consecutive_failures = 0;
        if probe {
            self.probe_in_flight = false;
        }
        if self.breaker == Breaker::HalfOpen && probe {
            self.probe_successes += 1;
            if self.probe_successes >= self.opts.breaker_close_successes {
                self.breaker = Breaker::Closed;
                self.events.push((EventKind::BreakerClosed, format!("{} probe(s) succeeded", self.probe_successes)));
            }
        }
    }

    /// A call failed with `e`.
    pub(super) fn on_failure(&mut self, now: Instant, e: &ProviderError, probe: bool) {
        if probe {
            self.probe_in_flight = false;
        }
        let outcome = e.outcome();
        if outcome == Outcome::Cancelled {
            return;
        }
        if outcome == Outcome::RateLimited {
            self.push(now, Kind::Throttle);
            let (wait, why) = match e.retry_after() {
                Some(ra) => (ra.min(self.opts.max_retry_after), format!("throttled; provider asked for {ra:?}")),
                None => (self.opts.default_throttle_cooldown, "throttled; no Retry-After, default cooldown".into()),
            };
            self.cool(now, wait, &why);
            // A throttled half-open probe says nothing about health: stay half-open.
            return;
        }
        self.push(now, Kind::Error);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match e {
            ProviderError::Http { status: 401 | 403, .. } => {
                self.cool(now, self.opts.auth_cooldown, &format!("{e}: key rejected?"));
            }
            ProviderError::Http { status: 402, .. } => {
                self.cool(now, self.opts.max_retry_after, "HTTP 402: credits exhausted");
                self.events.push((EventKind::BudgetExhausted, "provider answered 402 Payment Required".into()));
            }
            _ => {
                if let Some(ra) = e.retry_after() {
                    self.cool(now, ra.min(self.opts.max_retry_after), &format!("{e}; Retry-After {ra:?}"));
                }
            }
        }
        if matches!(e, ProviderError::Rejected(_)) {
            self.strikes.push_back(now);
            self.forgeries.push_back(now);
            while self.forgeries.len() > MAX_FORGERIES {
                self.forgeries.pop_front();
            }
            self.events.push((EventKind::IntegrityPenalty, e.to_string()));
        }
        self.prune(now);
        let reason = if self.breaker == Breaker::HalfOpen {
            Some(format!("probe failed: {e}"))
        } else if self.breaker == Breaker::Closed {
            let stats = self.stats(now);
            if self.strikes.len() >= self.opts.integrity_strikes {
                Some(format!("{} forged or inconsistent blocks within {:?}", self.strikes.len(), self.opts.window))
            } else if self.consecutive_failures >= self.opts.breaker_failures {
                Some(format!("{} consecutive failures; last: {e}", self.consecutive_failures))
            } else if stats.samples >= self.opts.breaker_min_samples && stats.error_rate > self.opts.breaker_error_rate
            {
                Some(format!("error rate {:.0}% over {} samples", stats.error_rate * 100.0, stats.samples))
            } else {
                None
            }
        } else {
            None
        };
        if let Some(reason) = reason {
            self.breaker = Breaker::Open;
            self.breaker_until = now + self.opts.breaker_cooldown;
            self.events.push((EventKind::BreakerOpen, reason));
        }
    }

    fn cool(&mut self, now: Instant, wait: Duration, why: &str) {
        let until = now + wait;
        if self.cooldown_until.is_none_or(|t| t < until) {
            self.cooldown_until = Some(until);
            self.events.push((EventKind::Cooldown, format!("{why}; no requests for {:.1}s", wait.as_secs_f64())));
        }
    }

    /// Mark the provider as on the wrong chain, for good.
    pub(super) fn wrong_chain(&mut self, reason: String) {
        if self.chain_ok != Some(false) {
            self.events.push((EventKind::WrongChain, reason));
        }
        self.chain_ok = Some(false);
    }

    /// The weight of the remembered forgeries now: each counts 1 when it happens and fades
    /// linearly to 0 over `integrity_memory`.
    pub(super) fn forgeries(&self, now: Instant) -> f64 {
        let memory = self.opts.integrity_memory.as_secs_f64();
        if memory <= 0.0 {
            return 0.0;
        }
        self.forgeries.iter().map(|t| (1.0 - now.saturating_duration_since(*t).as_secs_f64() / memory).max(0.0)).sum()
    }

    /// Requests per second over the last two seconds (what we were sending).
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn recent_rate(&self, now: Instant) -> f64 {
        let n = self
            .samples
            .iter()
            .rev()
            .take_while(|(t, _)| now.saturating_duration_since(*t) <= Duration::from_secs(2))
            .count();
        n as f64 / 2.0
    }

    /// Window figures now.
    pub(super) fn stats(&self, now: Instant) -> WindowStats {
        let mut lat: Vec<u32> = Vec::new();
        let mut block_lat: Vec<u32> = Vec::new();
        let (mut err, mut thr, mut n) = (0usize, 0usize, 0usize);
        for (t, k) in &self.samples {
            if now.saturating_duration_since(*t) > self.opts.window {
                continue;
            }
            n += 1;
            match k {
                Kind::Success(ms, block) => {
                    lat.push(*ms);
                    if *block {
                        block_lat.push(*ms);
                    }
                }
                Kind::Error => err += 1,
                Kind::Throttle => thr += 1,
            }
        }
        let successes = lat.len();
        // Block-fetch latency once there are enough samples of it; head polls otherwise.
        let mut lat = if block_lat.len() >= 5 { block_lat } else { lat };
        lat.sort_unstable();
        let pct = |p: f64| percentile(&lat, p);
        let judged = successes + err;
        WindowStats {
            samples: n,
            successes,
            p50_ms: pct(0.50),
            p95_ms: pct(0.95),
            p99_ms: pct(0.99),
            error_rate: if judged == 0 { 0.0 } else { ratio(err, judged) },
            throttle_rate: if n == 0 { 0.0 } else { ratio(thr, n) },
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: usize, b: usize) -> f64 {
    a as f64 / b as f64
}

/// Nearest-rank percentile of sorted values; `None` below 5 samples (too few to judge).
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.len() < 5 {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(f64::from(sorted[rank - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::wire::Reject;

    fn h() -> (Health, Instant) {
        let now = Instant::now();
        (Health::new(crate::fleet::FleetOptions::default().health, now), now)
    }

    fn http(status: u16, secs: Option<u64>) -> ProviderError {
        ProviderError::Http { status, retry_after: secs.map(Duration::from_secs) }
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_then_probes_and_closes() {
        let (mut h, t0) = h();
        for _ in 0..4 {
            assert_eq!(h.admit(t0), Ok(false));
            h.on_failure(t0, &http(500, None), false);
        }
        assert_eq!(h.breaker(), Breaker::Closed);
        h.on_failure(t0, &http(500, None), false);
        assert_eq!(h.breaker(), Breaker::Open);
        let until = t0 + Duration::from_secs(5);
        assert_eq!(h.admit(t0 + Duration::from_secs(1)), Err(Blocked::BreakerOpen(until)));
        // one probe after the cooldown, and only one at a time
        assert_eq!(h.admit(until), Ok(true));
        assert_eq!(h.admit(until), Err(Blocked::ProbeBusy));
        h.on_failure(until, &http(500, None), true);
        assert_eq!(h.breaker(), Breaker::Open, "failed probe reopens");
        let later = until + Duration::from_secs(5);
        assert_eq!(h.admit(later), Ok(true));
        h.on_success(later, Duration::from_millis(10), true, true);
        assert_eq!(h.breaker(), Breaker::HalfOpen);
        assert_eq!(h.admit(later), Ok(true));
        h.on_success(later, Duration::from_millis(10), true, true);
        assert_eq!(h.breaker(), Breaker::Closed);
        let kinds: Vec<_> = h.take_events().into_iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["breaker_open", "breaker_half_open", "breaker_open", "breaker_half_open", "breaker_closed"]);
    }

    #[test]
    fn error_rate_opens_the_breaker_only_after_enough_samples() {
        let (mut h, t0) = h();
        // alternate: never 5 in a row, but 50%+ errors
        for i in 0..40 {
            if i % 3 == 0 {
                h.on_success(t0, Duration::from_millis(5), false, true);
            } else {
                h.on_failure(t0, &http(502, None), false);
            }
            if h.breaker() == Breaker::Open {
                assert!(i >= 19, "opened after {i} samples");
                return;
            }
        }
        panic!("breaker never opened at ~67% errors");
    }

    #[test]
    fn throttles_cool_down_without_counting_as_errors() {
        let (mut h, t0) = h();
        h.on_failure(t0, &http(429, Some(3)), false);
        assert_eq!(h.admit(t0 + Duration::from_millis(2900)), Err(Blocked::Cooldown(t0 + Duration::from_secs(3))));
        assert_eq!(h.admit(t0 + Duration::from_secs(3)), Ok(false));
        // absurd Retry-After is clamped; absent → the default
        h.on_failure(t0, &http(429, Some(86_400)), false);
        assert_eq!(h.cooldown_until(t0), Some(t0 + Duration::from_secs(300)));
        let (mut h2, t0) = self::h();
        h2.on_failure(t0, &http(429, None), false);
        assert_eq!(h2.cooldown_until(t0), Some(t0 + Duration::from_secs(10)));
        let s = h2.stats(t0);
        assert_eq!((s.error_rate, s.throttle_rate), (0.0, 1.0));
        for _ in 0..10 {
            h2.on_failure(t0, &http(429, None), false);
        }
        assert_eq!(h2.breaker(), Breaker::Closed, "throttles never open the breaker");
    }

    #[test]
    fn integrity_strikes_open_the_breaker() {
        let (mut h, t0) = h();
        let forged = ProviderError::Rejected(Reject::WrongNumber { want: 5, got: 6 });
        h.on_failure(t0, &forged, false);
        h.on_success(t0, Duration::from_millis(1), false, true);
        h.on_failure(t0, &forged, false);
        h.on_success(t0, Duration::from_millis(1), false, true);
        assert_eq!(h.breaker(), Breaker::Closed);
        h.on_failure(t0, &forged, false);
        assert_eq!(h.breaker(), Breaker::Open);
    }

    #[test]
    fn a_forgery_is_remembered_long_after_the_window_and_then_forgotten() {
        let (mut h, t0) = h();
        assert!(h.forgeries(t0).abs() < f64::EPSILON);
        h.on_failure(t0, &ProviderError::Rejected(Reject::WrongNumber { want: 5, got: 6 }), false);
        assert!((h.forgeries(t0) - 1.0).abs() < 1e-9);
        // the window (60 s) forgets the failure; the integrity memory (1 h) does not
        let five_min = t0 + Duration::from_secs(300);
        h.on_success(five_min, Duration::from_millis(1), false, true);
        assert_eq!(h.stats(five_min).error_rate, 0.0);
        assert!((h.forgeries(five_min) - (1.0 - 300.0 / 3600.0)).abs() < 1e-9);
        // a plain error is no forgery
        h.on_failure(five_min, &http(500, None), false);
        assert!(h.forgeries(five_min) < 1.0);
        let later = t0 + Duration::from_secs(3601);
        h.on_success(later, Duration::from_millis(1), false, true);
        assert!(h.forgeries(later).abs() < f64::EPSILON);
    }

    #[test]
    fn percentiles_need_five_successes() {
        let (mut h, t0) = h();
        for ms in [10, 20, 30, 40] {
            h.on_success(t0, Duration::from_millis(ms), false, true);
        }
        assert_eq!(h.stats(t0).p95_ms, None);
        h.on_success(t0, Duration::from_millis(1000), false, true);
        let s = h.stats(t0);
        assert_eq!((s.p50_ms, s.p95_ms), (Some(30.0), Some(1000.0)));
        // old samples leave the window
        assert_eq!(h.stats(t0 + Duration::from_secs(61)).samples, 0);
    }
}
