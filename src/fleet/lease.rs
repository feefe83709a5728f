//! Taking one provider for one call and judging how the call ended: the admission rules (health,
//! budget, concurrency slot, token) in one place, and the settlement (health, AIMD, events).

use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::Fleet;
use super::budget::DAY_MS;
use super::limits::LimitWait;
use super::slot::{Slot, SlotState};
use crate::model::{EventKind, Outcome, ProviderId};
use crate::provider::ProviderError;

/// A provider picked for one request: holds its concurrency slot; frees a half-open probe
/// slot if dropped unfinished (a hedge loser, a cancelled call).
#[derive(Debug)]
pub(super) struct Lease<'a> {
    pub(super) slot: &'a Slot,
    pub(super) probe: bool,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Lease<'_> {
    pub(super) fn id(&self) -> ProviderId {
        self.slot.id()
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.slot.lock().health.release_probe();
        }
    }
}

/// Why a provider could not be taken right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Breaker, cooldown, wrong chain, a probe already out, or its budget: not this time.
    Ineligible,
    /// Its limits say wait (token bucket or concurrency).
    Limited(LimitWait),
}

impl Fleet {
    /// May `slot` be considered for `credits` more now (health and budget)? Records the first
    /// budget refusal of the day.
    pub(super) fn eligible(&self, slot: &Slot, st: &mut SlotState, credits: u64, now: Instant, ms: i64) -> bool {
        st.health.admissible(now) && !self.over_budget(slot, st, credits, ms)
    }

    /// Take `slot` for one call of `credits`: the only place a provider is admitted. Checks
    /// health and budget, takes a concurrency slot and a token, takes the breaker's probe slot
    /// when half-open, and reserves the credits (a provider bills what it saw).
    pub(super) fn take<'a>(&self, slot: &'a Slot, credits: u64, now: Instant, ms: i64) -> Result<Lease<'a>, Refused> {
        if !self.eligible(slot, &mut slot.lock(), credits, now, ms) {
            return Err(Refused::Ineligible);
        }
        let permit = slot.limits.try_acquire().map_err(Refused::Limited)?;
        let mut st = slot.lock();
        let admitted = st.health.admit(now);
        self.drain_events(slot, &mut st);
        let probe = admitted.map_err(|_| Refused::Ineligible)?;
        st.spend.add(ms, credits);
        Ok(Lease { slot, probe, done: false, _permit: permit })
    }

    /// Would `credits` more overrun the slot's budget? Told once per budget day, however many
    /// calls are refused.
    fn over_budget(&self, slot: &Slot, st: &mut SlotState, credits: u64, ms: i64) -> bool {
        let exhausted = st.spend.judge(&slot.policy, ms, self.opts.budget_headroom, credits).exhausted;
        let day = ms / DAY_MS;
        if exhausted && st.budget_out != Some(day) {
            st.budget_out = Some(day);
            let reason = format!(
                "{} credits spent today, {} this month; budget reached",
                st.spend.today(ms),
                st.spend.this_month(ms)
            );
            self.emit(slot, EventKind::BudgetExhausted, reason);
        }
        exhausted
    }

    /// Judge the end of a leased call: health, AIMD, events. `block` marks block fetches (whose
    /// latency the score uses).
    pub(super) fn settle(&self, mut lease: Lease<'_>, started: Instant, r: Result<(), &ProviderError>, block: bool) {
        lease.done = true;
        let now = Instant::now();
        let slot = lease.slot;
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
                    st.last_error = Some(e.to_string());
                    if e.outcome() == Outcome::RateLimited {
                        rate_note = slot.limits.on_throttle(now, st.health.recent_rate(now));
                    }
                }
            }
            self.drain_events(slot, &mut st);
        }
        if let Some(note) = rate_note {
            self.emit(slot, EventKind::RateAdjusted, note);
        }
    }

    /// Penalise `id` for an answer found false after its call was settled (logs it withheld,
    /// which another provider's verified receipts hold).
    pub(super) fn penalize(&self, id: ProviderId, e: &ProviderError) {
        let slot = self.slot(id);
        let mut st = slot.lock();
        st.health.on_failure(Instant::now(), e, false);
        self.drain_events(slot, &mut st);
    }
}
