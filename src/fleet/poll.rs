//! Talking to providers about the chain rather than its blocks: the start-up chain-id check
//! (a strict majority, or the configured id), the head poller, and publishing the fleet head
//! with each provider's lag.

use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::head::HeadReport;
use super::health::Breaker;
use super::{Fleet, FleetError, Slot};
use crate::model::{EventKind, Sighting, TelemetryEvent};
use crate::provider::{CallCtx, method};
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

    /// Poll every provider's head every `interval` until cancelled, publishing the fleet head.
    /// Each provider is polled on its own clock, so one slow provider never delays the others.
    pub async fn run_head_poller(self: std::sync::Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let loops = self.slots.iter().map(|slot| {
            let fleet = self.clone();
            let cancel = cancel.clone();
            let id = slot.id();
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
                        () = fleet.poll_one(fleet.slot(id)) => {}
                    }
                    fleet.publish_head();
                }
            }
        });
        join_all(loops).await;
    }

    /// One round of head polls (also used by tests to step deterministically).
    pub async fn poll_heads_once(&self) {
        join_all(self.slots.iter().map(|s| self.poll_one(s))).await;
        self.publish_head();
    }

    /// Poll one provider's head. Head polls obey the same breaker, cooldown and rate limits as
    /// block fetches; an open breaker's probe is usually a head poll.
    async fn poll_one(&self, slot: &Slot) {
        let chain_ok = slot.lock().health.chain_ok;
        if chain_ok == Some(false) {
            return;
        }
        let ctx = CallCtx { attempt: 1, hedged: false };
        if chain_ok.is_none() {
            let want = *self.chain_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Ok(lease) = self.take(slot, 0, Instant::now(), now_ms()) else { return };
            let started = Instant::now();
            let r = slot.provider.chain_id(ctx).await;
            self.settle(lease, started, r.as_ref().map(|_| ()), false);
            match r {
                Ok(id) if !self.judge_chain(slot, id, want.unwrap_or(id)) => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let credits = u64::from(slot.provider.credits(method::BLOCK_BY_NUMBER));
        let Ok(lease) = self.take(slot, credits, Instant::now(), now_ms()) else { return };
        let started = Instant::now();
        let r = slot.provider.head(self.opts.decode.verify_header_hash, ctx).await;
        self.settle(lease, started, r.as_ref().map(|_| ()), false);
        let Ok(h) = r else { return };
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
                provider: slot.id(),
                number: h.number,
                hash: h.hash,
                seen_ms: now_ms(),
            }));
        }
    }

    /// Decide the fleet head from every provider's latest head, update each one's lag, and
    /// tell subscribers when the head changed.
    pub(super) fn publish_head(&self) {
        self.publish_head_at(Instant::now());
    }

    /// [`publish_head`](Self::publish_head) at a given time (tests step the clock).
    pub(super) fn publish_head_at(&self, now: Instant) {
        let reports: Vec<HeadReport> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let st = slot.lock();
                if st.health.chain_ok == Some(false) {
                    return None;
                }
                let h = st.head?;
                let fresh = st.health.breaker() != Breaker::Open
                    && st.head_at.is_some_and(|t| now.saturating_duration_since(t) <= FRESH_HEAD);
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
        if let Some(d) = distrusted {
            tracing::warn!(
                provider = self.slot(d.provider).provider.name(),
                head = d.head,
                next = d.next,
                "head far ahead of every other provider; not believed"
            );
        }
        for slot in &self.slots {
            let mut st = slot.lock();
            // No head reported yet: unknown, not lagging (start-up would flap otherwise).
            let Some(own) = st.head.map(|h| h.number) else { continue };
            let Some(lag) = tracker.lag(own, st.lagging, now) else { continue };
            st.lag_blocks = lag.blocks;
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
