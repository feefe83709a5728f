//! Picking the provider for one request: the eligible ones in strategy order (lagging and
//! off-fork ones last), the sticky primary kept first, and a short wait for a clearly better
//! provider that has not reported the height yet.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::lease::{Lease, Refused};
use super::limits::LimitWait;
use super::select::{self, Candidate, Strategy, Switch};
use super::{Fleet, Slot};
use crate::model::{EventKind, ProviderId};

/// What one request asks of a provider.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    pub(super) method: &'static str,
    /// Calls in it (a batch of blocks costs each call's credits).
    pub(super) calls: u64,
    /// The highest height it names: only providers whose head reached it are asked.
    pub(super) need: Option<u64>,
    /// Early in the request: worth a short wait for a clearly better provider.
    pub(super) patient: bool,
}

/// The outcome of one pick.
#[derive(Debug)]
pub(super) enum Pick<'a> {
    Got(Lease<'a>),
    /// Someone could serve after this long (a token, a slot, or a better provider's head).
    Wait(Duration),
    /// Nobody can serve now.
    Nothing,
}

/// An eligible provider that has not reported the height asked for.
#[derive(Debug, Clone, Copy)]
struct Short {
    id: ProviderId,
    score: f64,
    tainted: bool,
    price: f64,
    over_pace: bool,
}

/// Eligible providers for one request, sorted into three groups.
#[derive(Debug, Default)]
struct Pool {
    ready: Vec<Candidate>,
    /// Lagging, or on another fork at the fleet head's height: asked only when nobody else can.
    last_resort: Vec<Candidate>,
    short: Vec<Short>,
}

impl Fleet {
    /// Pick the provider for `req` now, skipping `skip`.
    pub(super) fn pick(&self, req: &Request, skip: &[ProviderId]) -> Pick<'_> {
        self.pick_at(req, skip, Instant::now(), crate::types::now_ms())
    }

    /// [`pick`](Self::pick) at a given time (tests step the clock).
    pub(super) fn pick_at(&self, req: &Request, skip: &[ProviderId], now: Instant, ms: i64) -> Pick<'_> {
        let pool = self.pool(req, skip, now, ms);
        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut order = select::order(self.opts.strategy, pool.ready, rotation);
        if let Some(wait) = self.worth_waiting(req, &order, &pool.short) {
            return Pick::Wait(wait);
        }
        if self.opts.strategy == Strategy::Best {
            let short: Vec<ProviderId> = pool.short.iter().map(|s| s.id).collect();
            self.keep_sticky(&mut order, &short, now);
        }
        order.extend(select::order(self.opts.strategy, pool.last_resort, rotation));
        let credits = |slot: &Slot| u64::from(slot.provider.credits(req.method)).saturating_mul(req.calls);
        let mut wait: Option<Duration> = None;
        for c in order {
            let slot = self.slot(c.id);
            match self.take(slot, credits(slot), now, ms) {
                Ok(lease) => return Pick::Got(lease),
                Err(Refused::Ineligible) => {}
                Err(Refused::Limited(w)) => {
                    let d = match w {
                        LimitWait::Rate(d) => d,
                        LimitWait::Busy => Duration::from_millis(5),
                    };
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                }
            }
        }
        wait.map_or(Pick::Nothing, Pick::Wait)
    }

    /// Sort the eligible providers (health and budget allow the request) into groups.
    fn pool(&self, req: &Request, skip: &[ProviderId], now: Instant, ms: i64) -> Pool {
        let fleet_head = self.head();
        let mut pool = Pool::default();
        for slot in &self.slots {
            if skip.contains(&slot.id()) {
                continue;
            }
            let mut st = slot.lock();
            let credits = u64::from(slot.provider.credits(req.method)).saturating_mul(req.calls);
            if !self.eligible(slot, &mut st, credits, now, ms) {
                continue;
            }
            let over_pace = st.spend.judge(&slot.policy, ms, self.opts.budget_headroom, credits).over_pace;
            let (_, parts) = st.score(&slot.policy, now, over_pace);
            let price = slot.price(req.method);
            // Never ask a provider for a height above the head it reported.
            if let Some(n) = req.need
                && st.head.is_none_or(|h| h.number < n)
            {
                pool.short.push(Short {
                    id: slot.id(),
                    score: parts.score(),
                    tainted: parts.tainted(),
                    price,
                    over_pace,
                });
                continue;
            }
            let c = Candidate { id: slot.id(), tier: slot.policy.tier, parts, price, over_pace };
            let off_fork = fleet_head
                .zip(st.head)
                .is_some_and(|(f, h)| h.number == f.number && f.hash.is_some() && h.hash.is_some() && h.hash != f.hash);
            if st.lagging || off_fork { pool.last_resort.push(c) } else { pool.ready.push(c) }
        }
        pool
    }

    /// Early in a request, a provider that has not reported the height yet may be worth a short
    /// wait: at the tip it will within a poll. For `best`, the primary when it is clearly
    /// better than whoever could serve now; for `cheapest`, a cheaper one within its pace.
    fn worth_waiting(&self, req: &Request, order: &[Candidate], short: &[Short]) -> Option<Duration> {
        if !req.patient {
            return None;
        }
        let wait = Duration::from_millis(10);
        match self.opts.strategy {
            Strategy::Best => {
                let primary = self.lock_primary().current();
                let lead = short.iter().find(|s| Some(s.id) == primary)?;
                let first = order.first();
                let better = first.is_none_or(|c| self.lock_primary().clearly_better(lead.score, c.parts.score()));
                // A primary caught forging is not worth waiting for when a clean one can serve.
                let clean_ready = first.is_some_and(|c| !c.parts.tainted());
                (better && !(lead.tainted && clean_ready)).then_some(wait)
            }
            Strategy::Cheapest => {
                let first = order.first()?;
                short.iter().any(|s| !s.over_pace && s.price < first.price).then_some(wait)
            }
            Strategy::RoundRobin | Strategy::Priority => None,
        }
    }

    /// Best strategy: keep the current primary first unless a candidate is clearly better (and
    /// the primary has held for a while), the primary is no longer eligible, or it is tainted.
    fn keep_sticky(&self, order: &mut [Candidate], short: &[ProviderId], now: Instant) {
        let switched = self.lock_primary().keep(order, short, now);
        let Some((to, why)) = switched else { return };
        let name = |id: ProviderId| self.slot(id).provider.name().to_string();
        let margin = self.opts.switch_margin * 100.0;
        let reason = match why {
            Switch::First => "first primary".to_string(),
            Switch::Better { old, score, old_score } => {
                format!("score {score:.3} beats primary {}'s {old_score:.3} by more than {margin:.0}%", name(old))
            }
            Switch::NotEligible { old } => format!("primary {} is no longer eligible", name(old)),
            Switch::Tainted { old } => {
                format!("primary {} served forged or inconsistent blocks; a clean provider is preferred", name(old))
            }
        };
        self.emit(self.slot(to), EventKind::PrimarySwitch, reason);
    }
}
