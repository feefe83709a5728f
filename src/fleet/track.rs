//! Tracking each provider's head: polls on a schedule set by its role, price and the chain's
//! block time (by `eth_blockNumber` or by header), what a report changes, and the sightings
//! it gives (`block_sightings`).

use std::time::{Duration, Instant};

use alloy_primitives::B256;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::slot::{SubState, Tip};
use super::{Fleet, Slot, SlotState};
use crate::config::HeadPoll;
use crate::model::{ProviderId, Sighting, TelemetryEvent};
use crate::provider::{CallCtx, method};
use crate::types::now_ms;

/// Heights whose block hash the fleet remembers, to turn number-only sightings into rows.
const HASHES_KEPT: usize = 256;

/// How heads are tracked (`[heads]` and `poll_interval_ms`).
#[derive(Debug, Clone)]
pub struct HeadOptions {
    pub poll: HeadPoll,
    /// The primary's and every free provider's poll interval.
    pub interval: Duration,
    /// A paid provider that is not serving blocks.
    pub standby_interval: Duration,
    /// After a provider's height rose, its next poll waits this share of the block time.
    pub quiet_fraction: f64,
    /// A subscription with no head for this many block times while others advance is silent.
    pub silent_blocks: u32,
}

impl HeadOptions {
    /// From `poll_interval_ms` and the `[heads]` table (where the defaults are written down).
    pub fn from_config(c: &crate::config::Config) -> Self {
        let ms = Duration::from_millis;
        Self {
            poll: c.heads.poll,
            interval: ms(c.poll_interval_ms),
            standby_interval: ms(c.heads.standby_poll_interval_ms),
            quiet_fraction: c.heads.quiet_fraction,
            silent_blocks: c.heads.silent_blocks,
        }
    }
}

impl Default for HeadOptions {
    fn default() -> Self {
        Self::from_config(&crate::config::Config::default())
    }
}

impl Fleet {
    /// Track every provider's head until cancelled: a subscription where the provider has a
    /// WebSocket URL (polling it while the subscription is down or silent), polls otherwise,
    /// each provider on its own clock so a slow one never delays the others.
    pub async fn run_head_poller(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        let loops = self.slots.iter().map(|slot| {
            let fleet = self.clone();
            let cancel = cancel.clone();
            let id = slot.id();
            async move {
                // Both in this task, so that stopping the poller waits for the subscription too.
                let polls = fleet.run_polls(id, &cancel);
                if slot.provider.ws_url().is_some() {
                    futures::future::join(Box::pin(fleet.run_subscription(id, cancel.clone())), polls).await;
                } else {
                    polls.await;
                }
            }
        });
        join_all(loops).await;
    }

    async fn run_polls(&self, id: ProviderId, cancel: &CancellationToken) {
        let slot = self.slot(id);
        loop {
            let now = Instant::now();
            let due = self.next_poll(slot, now);
            // Re-read the schedule at least every interval: roles and subscriptions change.
            let wait = due.map_or(self.opts.heads.interval, |d| d.saturating_duration_since(now));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait.min(self.opts.heads.interval)) => {}
            }
            let now = Instant::now();
            if self.next_poll(slot, now).is_some_and(|d| d <= now) {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.poll_one(slot) => {}
                }
                self.publish_head();
            }
        }
    }

    /// This provider's poll interval: its own setting, else the standby interval for a paid
    /// provider while another one serves the tip, else the fleet's.
    pub(super) fn poll_interval(&self, slot: &Slot) -> Duration {
        if let Some(d) = slot.policy.poll_interval {
            return d;
        }
        let serving = self.tip_server().is_none_or(|s| s == slot.id());
        if slot.policy.price_per_million > 0.0 && !serving {
            self.opts.heads.standby_interval
        } else {
            self.opts.heads.interval
        }
    }

    /// When `slot` should next be polled; None while its subscription delivers heads.
    pub(super) fn next_poll(&self, slot: &Slot, now: Instant) -> Option<Instant> {
        let interval = self.poll_interval(slot);
        let st = slot.lock();
        if st.sub == SubState::Live {
            return None;
        }
        let Some(last) = st.polled_at else { return Some(now) };
        let mut due = last + interval;
        // Right after its height rose, the next block is most of a block time away.
        if self.opts.heads.quiet_fraction > 0.0
            && let (Some(moved), Some(bt)) = (st.moved_at, self.lock_clock().shortest())
        {
            due = due.max(moved + bt.mul_f64(self.opts.heads.quiet_fraction));
        }
        Some(due)
    }

    /// One round of head polls of every provider not on a live subscription (also used by tests
    /// and at start-up).
    pub async fn poll_heads_once(&self) {
        join_all(self.slots.iter().filter(|s| s.lock().sub != SubState::Live).map(|s| self.poll_one(s))).await;
        self.publish_head();
    }

    /// Poll one provider's head. Head polls obey the same breaker, cooldown and rate limits as
    /// block fetches; an open breaker's probe is usually a head poll.
    async fn poll_one(&self, slot: &Slot) {
        slot.lock().polled_at = Some(Instant::now());
        if !self.chain_checked(slot).await {
            return;
        }
        let ctx = CallCtx { attempt: 1, hedged: false };
        let method = match self.opts.heads.poll {
            HeadPoll::Number => method::BLOCK_NUMBER,
            HeadPoll::Header => method::BLOCK_BY_NUMBER,
        };
        let credits = u64::from(slot.provider.credits(method));
        let Ok(lease) = self.take(slot, credits, Instant::now(), now_ms()) else { return };
        let started = Instant::now();
        let r = match self.opts.heads.poll {
            HeadPoll::Number => {
                slot.provider.block_number(ctx).await.map(|number| Tip { number, hash: None, parent_hash: None })
            }
            HeadPoll::Header => slot.provider.head(self.opts.decode.verify_header_hash, ctx).await.map(Tip::from),
        };
        self.settle(lease, started, r.as_ref().map(|_| ()), false);
        if let Ok(tip) = r {
            self.observe(slot, tip);
        }
    }

    /// Take a head report (poll or notification): the provider's head, when it moved, and a
    /// sighting for a block it had not shown before. A bare height that equals the known one
    /// keeps the hash a header or notification gave it.
    pub(super) fn observe(&self, slot: &Slot, tip: Tip) {
        let now = Instant::now();
        let seen_ms = now_ms();
        let sighting = {
            let mut st = slot.lock();
            let prev = st.head;
            let tip = match prev {
                Some(p) if tip.hash.is_none() && p.number == tip.number => p,
                _ => tip,
            };
            if prev.is_none_or(|p| p.number != tip.number || p.hash != tip.hash) {
                st.moved_at = Some(now);
            }
            st.head = Some(tip);
            st.head_at = Some(now);
            match tip.hash {
                Some(h) if st.last_sighting != Some(h) => {
                    st.last_sighting = Some(h);
                    Some((tip.number, h, seen_ms))
                }
                Some(_) => None,
                None => {
                    if prev.is_none_or(|p| p.number != tip.number) {
                        st.unsighted = Some((tip.number, seen_ms));
                    }
                    let hash = self.hash_at(tip.number);
                    hash.and_then(|h| sighted(&mut st, tip.number, h).map(|ms| (tip.number, h, ms)))
                }
            }
        };
        if let Some((number, hash, ms)) = sighting {
            self.sight(slot.id(), number, hash, ms);
        }
    }

    fn sight(&self, provider: ProviderId, number: u64, hash: B256, seen_ms: i64) {
        self.telemetry.record(TelemetryEvent::Sighting(Sighting { provider, number, hash, seen_ms }));
    }

    /// A block at the tip was fetched from `from`: remember its hash, note who serves the tip,
    /// and record the sightings that waited for it (providers that showed the height by number).
    pub(super) fn learned_block(&self, number: u64, hash: B256, from: ProviderId) {
        {
            let mut t = self.lock_tip();
            t.hashes.insert(number, hash);
            while t.hashes.len() > HASHES_KEPT {
                t.hashes.pop_first();
            }
            t.server = Some(from);
        }
        for slot in &self.slots {
            let waiting = sighted(&mut slot.lock(), number, hash);
            if let Some(ms) = waiting {
                self.sight(slot.id(), number, hash, ms);
            }
        }
    }

    fn hash_at(&self, number: u64) -> Option<B256> {
        self.lock_tip().hashes.get(&number).copied()
    }

    /// Who served the newest tip block.
    fn tip_server(&self) -> Option<ProviderId> {
        self.lock_tip().server
    }
}

/// A height the provider showed by number only is now known to be block `hash`: when it is the
/// one waiting and not already recorded, mark it sighted and return when it was first seen.
fn sighted(st: &mut SlotState, number: u64, hash: B256) -> Option<i64> {
    match st.unsighted {
        Some((n, ms)) if n == number && st.last_sighting != Some(hash) => {
            st.unsighted = None;
            st.last_sighting = Some(hash);
            Some(ms)
        }
        _ => None,
    }
}
