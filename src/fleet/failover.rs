//! The failover loop every fetch runs: ask providers in selection order, skip the ones that
//! failed this request, back off (full jitter) when every eligible provider failed, and give up
//! after the attempt budget or the request deadline. Plus hedging of single tip fetches.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lease::Lease;
use super::route::{Pick, Request};
use super::{Fleet, FleetError};
use crate::model::ProviderId;
use crate::provider::{CallCtx, Provider, ProviderError};

/// How long a request may wait for a clearly better primary to report the height it needs.
const LEADER_PATIENCE: Duration = Duration::from_millis(250);

/// The state of one request's attempts across providers.
#[derive(Debug)]
pub(super) struct Attempts<'f> {
    fleet: &'f Fleet,
    started: Instant,
    deadline: Instant,
    /// Providers not to ask again until every other one failed.
    skip: Vec<ProviderId>,
    attempt: u32,
    pass: u32,
    last: String,
}

impl<'f> Attempts<'f> {
    /// A new request; the providers in `avoid` are asked only after every other one failed or
    /// was ineligible.
    pub(super) fn new(fleet: &'f Fleet, avoid: &[ProviderId]) -> Self {
        let started = Instant::now();
        Self {
            fleet,
            started,
            deadline: started + fleet.opts.request_deadline,
            skip: avoid.to_vec(),
            attempt: 0,
            pass: 0,
            last: "no provider is eligible (none has reported a head that high, or all are excluded)".into(),
        }
    }

    /// The number of the attempt just leased (1-based).
    pub(super) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Lease the next provider for `method` × `calls` up to height `need`: waits for tokens
    /// and slots, backs off after a full pass of failures, fails at the deadline.
    pub(super) async fn lease(
        &mut self,
        method: &'static str,
        calls: u64,
        need: Option<u64>,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Lease<'f>, FleetError> {
        loop {
            let req = Request { method, calls, need, patient: self.started.elapsed() < LEADER_PATIENCE };
            match self.fleet.pick(&req, &self.skip) {
                Pick::Got(lease) => {
                    self.attempt += 1;
                    return Ok(lease);
                }
                Pick::Wait(d) => {
                    tokio::time::sleep(d.clamp(Duration::from_millis(1), Duration::from_millis(100))).await;
                }
                Pick::Nothing => {
                    if Instant::now() >= self.deadline {
                        return Err(self.exhausted(what()));
                    }
                    self.skip.clear();
                    tokio::time::sleep(self.fleet.backoff(self.pass)).await;
                    self.pass += 1;
                }
            }
        }
    }

    /// Provider `id` failed with `e`: not asked again this pass. Errs once the attempt budget
    /// is spent.
    pub(super) fn failed(
        &mut self,
        id: ProviderId,
        e: &ProviderError,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<(), FleetError> {
        let name = self.fleet.slot(id).provider.name();
        tracing::debug!(provider = name, error = %e, what = %what(), "attempt failed");
        self.last = format!("{name}: {e}");
        self.skip.push(id);
        if self.attempt >= self.fleet.opts.max_attempts { Err(self.exhausted(what())) } else { Ok(()) }
    }

    fn exhausted(&self, what: String) -> FleetError {
        FleetError::Exhausted { what, attempts: self.attempt, last: self.last.clone() }
    }
}

impl Fleet {
    /// Run `op` on providers in selection order until one succeeds, within the attempt budget
    /// and the request deadline; `hedge` races a second provider after the hedge delay.
    pub(super) async fn with_failover<T, F, Fut>(
        &self,
        what: impl Fn() -> String + Sync,
        method: &'static str,
        need: Option<u64>,
        hedge: bool,
        op: F,
    ) -> Result<T, FleetError>
    where
        F: Fn(Arc<Provider>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut tries = Attempts::new(self, &[]);
        loop {
            let lease = tries.lease(method, 1, need, &what).await?;
            let attempt = tries.attempt();
            let r = if hedge {
                self.hedged(lease, method, need, &op, attempt).await
            } else {
                let p = lease.slot.provider.clone();
                self.attempt(lease, op(p, CallCtx { attempt, hedged: false })).await
            };
            match r {
                Ok(v) => return Ok(v),
                Err((id, e)) => tries.failed(id, &e, &what)?,
            }
        }
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
    ) -> Result<T, (ProviderId, ProviderError)>
    where
        F: Fn(Arc<Provider>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let first_id = first.id();
        let p1 = first.slot.provider.clone();
        let f1 = self.attempt(first, op(p1, CallCtx { attempt, hedged: false }));
        tokio::pin!(f1);
        tokio::select! {
            r = &mut f1 => return r,
            () = tokio::time::sleep(self.hedge_delay()) => {}
        }
        // The next provider may not have reported this height yet: keep looking until it has,
        // or until the first answers.
        let req = Request { method, calls: 1, need, patient: false };
        let second = loop {
            if let Pick::Got(second) = self.pick(&req, &[first_id]) {
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

    /// Run one call on a leased provider and judge the result.
    async fn attempt<T, Fut>(&self, lease: Lease<'_>, fut: Fut) -> Result<T, (ProviderId, ProviderError)>
    where
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let id = lease.id();
        let started = Instant::now();
        let r = fut.await;
        self.settle(lease, started, r.as_ref().map(|_| ()), true);
        r.map_err(|e| (id, e))
    }

    /// The wait before hedging: the primary's p95 (or, with no primary, the median provider's
    /// — robust to one slow provider and to one suspiciously fast one), clamped.
    fn hedge_delay(&self) -> Duration {
        let now = Instant::now();
        let primary = self.lock_primary().current();
        let p95 = |id: ProviderId| self.slot(id).lock().health.stats(now).p95_ms;
        let median = || {
            let mut v: Vec<f64> = self.slots.iter().filter_map(|s| p95(s.id())).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let ms = primary.and_then(p95).or_else(median).unwrap_or(250.0);
        Duration::try_from_secs_f64(ms / 1000.0)
            .unwrap_or(self.opts.hedge_max)
            .clamp(self.opts.hedge_min, self.opts.hedge_max)
    }

    /// Backoff after the `pass`-th full pass of failures: doubling, capped, full jitter (so
    /// retries from many workers do not line up).
    pub(super) fn backoff(&self, pass: u32) -> Duration {
        let base = self.opts.backoff_base.saturating_mul(1 << pass.min(10));
        let capped = base.min(self.opts.backoff_max);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}
