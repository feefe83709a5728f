//! Talking to providers about the chain rather than its blocks: the start-up chain-id check
//! (a strict majority, or the configured id) and publishing the fleet head with each
//! provider's lag.

use std::time::{Duration, Instant};

use futures::future::join_all;

use super::head::HeadReport;
use super::health::Breaker;
use super::{Fleet, FleetError, Slot};
use crate::model::EventKind;
use crate::provider::CallCtx;
use crate::types::now_ms;

/// A head older than this does not count as a witness against another provider's head.
const FRESH_HEAD: Duration = Duration::from_secs(5);

/// The chain the answers agree on: the configured one, else a strict majority of the providers
/// that answered. `answers` are (provider name, chain id).
fn chain_of(expected: Option<u64>, answers: &[(String, u64)]) -> Result<u64, FleetError> {
    if let Some(e) = expected {
        return Ok(e);
    }
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for (_, id) in answers {
        match counts.iter_mut().find(|(c, _)| c == id) {
            Some((_, n)) => *n += 1,
            None => counts.push((*id, 1)),
        }
    }
    match counts.iter().max_by_key(|(_, n)| *n) {
        None => Err(FleetError::NoChainId { errors: String::new() }),
        Some((id, n)) if n * 2 > answers.len() => Ok(*id),
        Some(_) => {
            let each = answers.iter().map(|(name, id)| format!("{name} serves chain {id}")).collect::<Vec<_>>();
            Err(FleetError::SplitChain { answers: each.join(", ") })
        }
    }
}

impl Fleet {
    /// Check every provider's `eth_chainId` against `expected`, or, when `None`, against the
    /// chain a strict majority of the answering providers serve (no strict majority: refused,
    /// naming each provider's chain). Providers on another chain are excluded for good, loudly;
    /// ones that did not answer are checked again by the head poller before first use.
    pub async fn verify_chain(&self, expected: Option<u64>) -> Result<u64, FleetError> {
        let ctx = CallCtx { attempt: 1, hedged: false };
        let answers = join_all(self.slots.iter().map(|s| s.provider.chain_id(ctx))).await;
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for (slot, a) in self.slots.iter().zip(&answers) {
            match a {
                Ok(id) => ok.push((slot.provider.name().to_string(), *id)),
                Err(e) => {
                    slot.lock().last_error = Some(e.to_string());
                    errors.push(format!("{}: {e}", slot.provider.name()));
                }
            }
        }
        let chain = match chain_of(expected, &ok) {
            Err(FleetError::NoChainId { .. }) => return Err(FleetError::NoChainId { errors: errors.join("; ") }),
            other => other?,
        };
        let mut any_ok = false;
        for (slot, a) in self.slots.iter().zip(&answers) {
            match a {
                Ok(id) => any_ok |= self.judge_chain(slot, *id, chain),
                Err(e) => tracing::warn!(provider = slot.provider.name(), error = %e, "chain id not checked yet"),
            }
        }
        if !any_ok && errors.is_empty() {
            let seen = ok.iter().map(|(n, id)| format!("{n}: {id}")).collect::<Vec<_>>().join(", ");
            return Err(FleetError::WrongChain { expected: chain, seen });
        }
        *self.chain_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(chain);
        Ok(chain)
    }

    /// Record whether `slot`, which answered `id`, is on chain `expected`; a provider on
    /// another chain is excluded for good, loudly. Returns whether it may be used.
    fn judge_chain(&self, slot: &Slot, id: u64, expected: u64) -> bool {
        let ok = id == expected;
        let mut st = slot.lock();
        if ok {
            st.health.chain_ok = Some(true);
        } else {
            st.health.wrong_chain(format!("eth_chainId says {id}, the fleet follows {expected}; never used"));
        }
        self.drain_events(slot, &mut st);
        ok
    }

    /// Whether `slot` may be polled: on the fleet's chain, checking `eth_chainId` first when
    /// it did not answer at start-up.
    pub(super) async fn chain_checked(&self, slot: &Slot) -> bool {
        if let Some(ok) = slot.lock().health.chain_ok {
            return ok;
        }
        let want = *self.chain_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Ok(lease) = self.take(slot, 0, Instant::now(), now_ms()) else { return false };
        let started = Instant::now();
        let r = slot.provider.chain_id(CallCtx { attempt: 1, hedged: false }).await;
        self.settle(lease, started, r.as_ref().map(|_| ()), false);
        r.is_ok_and(|id| self.judge_chain(slot, id, want.unwrap_or(id)))
    }

    /// Decide the fleet head from every provider's latest head, update each one's lag, and
    /// tell subscribers when the head changed.
    pub(super) fn publish_head(&self) {
        self.publish_head_at(Instant::now());
    }

    /// [`publish_head`](Self::publish_head) at a given time (tests step the clock).
    pub(super) fn publish_head_at(&self, now: Instant) {
        let block_time = self.lock_clock().typical().unwrap_or(Duration::ZERO);
        // Each provider's poll interval, read once and before any slot lock (it reads the tip).
        let intervals: Vec<Duration> = self.slots.iter().map(|slot| self.poll_interval(slot)).collect();
        let reports: Vec<HeadReport> = self
            .slots
            .iter()
            .zip(&intervals)
            .filter_map(|(slot, interval)| {
                let st = slot.lock();
                if st.health.chain_ok == Some(false) {
                    return None;
                }
                let h = st.head?;
                // Fresh: reported within its own rhythm — two poll intervals (a standby polled
                // every 10 s is not stale at 6 s) or two block times (a subscription, or a poll
                // in its quiet period, says nothing until the next block on a 12 s chain).
                let fresh_for = FRESH_HEAD.max(*interval * 2).max(block_time * 2);
                let fresh = st.health.breaker() != Breaker::Open
                    && st.head_at.is_some_and(|t| now.saturating_duration_since(t) <= fresh_for);
                Some(HeadReport {
                    provider: slot.id(),
                    number: h.number,
                    hash: h.hash,
                    parent_hash: h.parent_hash,
                    fresh,
                })
            })
            .collect();
        let mut tracker = self.lock_tracker();
        let (best, distrusted) = tracker.publish(&reports, now);
        if let Some(b) = best {
            self.lock_clock().observe(b.number, now);
        }
        if let Some(d) = distrusted {
            tracing::warn!(
                provider = self.slot(d.provider).provider.name(),
                head = d.head,
                next = d.next,
                "head far ahead of every other provider; not believed"
            );
        }
        for (slot, interval) in self.slots.iter().zip(&intervals) {
            let mut st = slot.lock();
            // No head reported yet: unknown, not lagging (start-up would flap otherwise).
            let Some(own) = st.head.map(|h| h.number) else { continue };
            // Judged as of its report, but a report may be only one poll interval old: a
            // provider that stopped reporting is judged against the head it should have seen.
            let rhythm = now.checked_sub(*interval).unwrap_or(now);
            let at = st.head_at.map_or(now, |t| t.max(rhythm));
            let Some(lag) = tracker.lag(own, st.lagging, st.beyond_since, at) else { continue };
            st.lag_blocks = lag.blocks;
            st.beyond_since = lag.beyond_since;
            if lag.lagging != st.lagging {
                st.lagging = lag.lagging;
                let (kind, reason) = if lag.lagging {
                    let max = self.opts.max_lag_blocks;
                    (EventKind::Excluded, format!("lagging {} blocks behind the fleet head (max {max})", lag.blocks))
                } else {
                    (EventKind::Readmitted, format!("caught up: {} blocks behind", lag.blocks))
                };
                self.emit(slot, kind, reason);
            }
        }
        drop(tracker);
        self.head_tx.send_if_modified(|cur| {
            let changed = *cur != best;
            *cur = best;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(n, id)| ((*n).to_string(), *id)).collect()
    }

    #[test]
    fn the_chain_is_the_configured_one_or_a_strict_majority() {
        assert_eq!(chain_of(Some(5), &answers(&[("a", 1), ("b", 1)])), Ok(5));
        assert_eq!(chain_of(None, &answers(&[("a", 31337), ("b", 5), ("c", 31337)])), Ok(31337));
        assert_eq!(chain_of(None, &answers(&[("a", 1)])), Ok(1));
        let e = chain_of(None, &answers(&[("a", 31337), ("b", 5)])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("a serves chain 31337") && e.contains("b serves chain 5") && e.contains("chain_id"), "{e}");
        assert!(chain_of(None, &answers(&[("a", 1), ("b", 2), ("c", 3)])).is_err());
        assert!(matches!(chain_of(None, &[]), Err(FleetError::NoChainId { .. })));
    }
}
