//! Per-provider request limits: a token bucket (governor) for `max_rps` with burst, a
//! concurrency cap (semaphore), and AIMD adaptation of the rate after throttles.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Lowest rate AIMD backs off to.
const MIN_RPS: f64 = 0.2;
/// Quiet time after a throttle before the rate grows again, and between increases.
const INCREASE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Rate {
    /// Current allowed rate; `None` = unlimited (no `max_rps` and no throttle seen).
    rps: Option<f64>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    last_change: Instant,
}

/// The limits of one provider.
#[derive(Debug)]
pub(super) struct Limits {
    configured: Option<f64>,
    burst: u32,
    rate: Mutex<Rate>,
    sem: Arc<Semaphore>,
    clock: DefaultClock,
}

/// Why no request may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LimitWait {
    /// The bucket has a token again after this long.
    Rate(Duration),
    /// Every concurrency slot is taken.
    Busy,
}

fn limiter(rps: f64, burst: u32) -> Option<Arc<DefaultDirectRateLimiter>> {
    let period = Duration::try_from_secs_f64(1.0 / rps).ok()?;
    let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?);
    Some(Arc::new(RateLimiter::direct(quota)))
}

impl Limits {
    /// `max_rps` (None: unlimited until a throttle teaches us a rate), `burst` tokens,
    /// `max_concurrency` requests in flight.
    pub(super) fn new(max_rps: Option<f64>, burst: u32, max_concurrency: u32) -> Self {
        let rps = max_rps.filter(|r| *r > 0.0);
        Self {
            configured: rps,
            burst: burst.max(1),
            rate: Mutex::new(Rate { rps, limiter: rps.and_then(|r| limiter(r, burst)), last_change: Instant::now() }),
            sem: Arc::new(Semaphore::new(usize::try_from(max_concurrency.max(1)).unwrap_or(1))),
            clock: DefaultClock::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rate> {
        self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The allowed rate now (None: unlimited).
    pub(super) fn current_rps(&self) -> Option<f64> {
        self.lock().rps
    }

    /// Take a concurrency slot and a token, or say how long to wait.
    pub(super) fn try_acquire(&self) -> Result<OwnedSemaphorePermit, LimitWait> {
        let permit = self.sem.clone().try_acquire_owned().map_err(|_| LimitWait::Busy)?;
        let limiter = self.lock().limiter.clone();
        if let Some(l) = limiter
            && let Err(not_until) = l.check()
        {
            return Err(LimitWait::Rate(not_until.wait_time_from(self.clock.now())));
        }
        Ok(permit)
    }

    /// A throttle: halve the rate (multiplicative decrease). `observed_rps` is what we were
    /// sending, used when no rate was configured. Returns a description when the rate changed.
    pub(super) fn on_throttle(&self, now: Instant, observed_rps: f64) -> Option<String> {
        let mut r = self.lock();
        // Several in-flight requests throttled together are one signal, not several.
        if r.rps.is_some() && now.saturating_duration_since(r.last_change) < Duration::from_millis(500) {
            return None;
        }
        let base = r.rps.unwrap_or(observed_rps.max(1.0));
        let new = (base / 2.0).max(MIN_RPS);
        r.rps = Some(new);
        r.limiter = limiter(new, self.burst);
        r.last_change = now;
        Some(format!("throttled: rate {base:.1} → {new:.1} req/s"))
    }

    /// A success: after a quiet spell, add a little rate back (additive increase) up to the
    /// configured rate; a learned rate with nothing configured is lifted once it doubled back.
    pub(super) fn on_success(&self, now: Instant) -> Option<String> {
        let mut r = self.lock();
        let cur = r.rps?;
        if now.saturating_duration_since(r.last_change) < INCREASE_EVERY {
            return None;
        }
        let step = self.configured.map_or(1.0, |c| (c * 0.1).max(0.5));
        let new = cur + step;
        r.last_change = now;
        match self.configured {
            Some(c) if cur >= c => None,
            Some(c) => {
                let new = new.min(c);
                r.rps = Some(new);
                r.limiter = limiter(new, self.burst);
                Some(format!("recovering: rate {cur:.1} → {new:.1} req/s"))
            }
            None if new > 64.0 => {
                r.rps = None;
                r.limiter = None;
                Some("recovered: rate limit lifted".into())
            }
            None => {
                r.rps = Some(new);
                r.limiter = limiter(new, self.burst);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_slots_limit_requests() {
        let l = Limits::new(Some(2.0), 2, 8);
        let a = l.try_acquire();
        let b = l.try_acquire();
        assert!(a.is_ok() && b.is_ok(), "burst of 2");
        assert!(matches!(l.try_acquire(), Err(LimitWait::Rate(_))));
        let c = Limits::new(None, 1, 1);
        let held = c.try_acquire();
        assert!(held.is_ok());
        assert_eq!(c.try_acquire().err(), Some(LimitWait::Busy));
        drop(held);
        assert!(c.try_acquire().is_ok());
    }

    #[test]
    fn aimd_halves_on_throttle_and_recovers_slowly() {
        let l = Limits::new(Some(10.0), 5, 8);
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(l.on_throttle(t0, 0.0).is_some());
        assert_eq!(l.current_rps(), Some(5.0));
        // a burst of throttles at once counts once
        assert!(l.on_throttle(t0 + Duration::from_millis(100), 0.0).is_none());
        assert_eq!(l.on_success(t0 + Duration::from_secs(1)), None);
        assert!(l.on_success(t0 + Duration::from_secs(3)).is_some());
        assert_eq!(l.current_rps(), Some(6.0));
        // without a configured rate, a throttle sets one from what we were sending
        let u = Limits::new(None, 5, 8);
        assert!(u.on_throttle(t0, 8.0).is_some());
        assert_eq!(u.current_rps(), Some(4.0));
    }
}
