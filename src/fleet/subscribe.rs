//! `newHeads` subscriptions: heads by notification instead of polls, reconnecting with backoff
//! and jitter, and falling back to polls when a subscription goes silent while the chain moves.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::slot::SubState;
use super::{Fleet, Slot};
use crate::model::{EventKind, ProviderId};
use crate::provider::{HeadSubscription, ProviderError};

/// How often a live subscription is checked for silence.
const SILENCE_CHECK: Duration = Duration::from_millis(100);

/// A silent subscription is retried after this long (it is polled meanwhile).
const RESUBSCRIBE_AFTER_SILENCE: Duration = Duration::from_secs(30);

/// Reconnect backoff: first wait, and the most.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a subscription stopped delivering.
enum End {
    Cancelled,
    Closed(String),
    Silent(String),
}

impl Fleet {
    /// Keep a `newHeads` subscription to provider `id` until cancelled.
    pub(super) async fn run_subscription(&self, id: ProviderId, cancel: CancellationToken) {
        let slot = self.slot(id);
        let mut failures = 0u32;
        slot.lock().sub = SubState::Connecting;
        loop {
            // Heads are believed only from a provider on the fleet's chain.
            let subscribed = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.open_subscription(slot) => r,
            };
            let wait = match subscribed {
                Ok(mut sub) => {
                    failures = 0;
                    match Box::pin(self.follow_subscription(slot, &mut sub, &cancel)).await {
                        End::Cancelled => return,
                        End::Closed(reason) => {
                            self.set_sub(slot, SubState::Connecting, EventKind::SubscriptionLost, reason);
                            BACKOFF_BASE
                        }
                        End::Silent(reason) => {
                            self.set_sub(slot, SubState::Silent, EventKind::SubscriptionSilent, reason);
                            RESUBSCRIBE_AFTER_SILENCE
                        }
                    }
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        self.set_sub(slot, SubState::Connecting, EventKind::SubscriptionLost, reason);
                    }
                    (BACKOFF_BASE * 2u32.saturating_pow(failures.min(8))).min(BACKOFF_MAX)
                }
            };
            // Full jitter: many providers (or many processes) do not reconnect in step.
            let wait = wait.mul_f64(0.5 + fastrand::f64() * 0.5);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn open_subscription(&self, slot: &Slot) -> Result<HeadSubscription, String> {
        if !self.chain_checked(slot).await {
            return Err("chain id not confirmed yet".into());
        }
        Box::pin(slot.provider.subscribe_heads()).await.map_err(|e| format!("subscribe failed: {e}"))
    }

    /// Move `slot`'s subscription to `state`, with a provider event when it changed.
    fn set_sub(&self, slot: &Slot, state: SubState, kind: EventKind, reason: String) {
        let changed = {
            let mut st = slot.lock();
            let was = st.sub;
            st.sub = state;
            // "Lost" again while still reconnecting is not news.
            was != state || kind != EventKind::SubscriptionLost
        };
        if changed {
            self.emit(slot, kind, reason);
        }
    }

    /// Take heads from `sub` until it ends, goes silent, or `cancel`.
    async fn follow_subscription(&self, slot: &Slot, sub: &mut HeadSubscription, cancel: &CancellationToken) -> End {
        let verify = self.opts.decode.verify_header_hash;
        let mut last = Instant::now();
        let mut check = tokio::time::interval(SILENCE_CHECK);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return End::Cancelled,
                n = sub.next_raw() => match n {
                    None => return End::Closed("the subscription's connection closed".into()),
                    Some(Err(e)) => return End::Closed(e),
                    Some(Ok(raw)) => {
                        last = Instant::now();
                        self.take_notification(slot, raw.get(), verify);
                    }
                },
                _ = check.tick() => {
                    if let Some(reason) = self.silent(slot, last) {
                        return End::Silent(reason);
                    }
                }
            }
        }
    }

    /// One `newHeads` notification: checked like a polled header (a forged one counts against
    /// the provider), then taken as its head.
    fn take_notification(&self, slot: &Slot, raw: &str, verify: bool) {
        match crate::provider::wire::decode_head(raw, verify).map_err(ProviderError::from) {
            Ok(h) => {
                let first = {
                    let mut st = slot.lock();
                    let first = st.sub != SubState::Live;
                    st.sub = SubState::Live;
                    first
                };
                if first {
                    self.emit(
                        slot,
                        EventKind::Subscribed,
                        format!("newHeads delivers heads (at {}); not polled", h.number),
                    );
                }
                self.observe(slot, h.into());
                self.publish_head();
            }
            Err(e) => {
                tracing::warn!(provider = slot.provider.name(), error = %e, "newHeads notification refused");
                let mut st = slot.lock();
                st.health.on_failure(Instant::now(), &e, false);
                self.drain_events(slot, &mut st);
            }
        }
    }

    /// Why the subscription counts as silent: no head for `silent_blocks` block times since
    /// `last` while the fleet head moved past this provider's.
    fn silent(&self, slot: &Slot, last: Instant) -> Option<String> {
        let bt = self.lock_clock().typical().unwrap_or(self.opts.heads.interval);
        let deadline = (bt * self.opts.heads.silent_blocks).max(Duration::from_millis(500));
        let quiet = last.elapsed();
        if quiet < deadline {
            return None;
        }
        let own = slot.lock().head.map(|h| h.number);
        let fleet = self.head()?.number;
        if own.is_some_and(|o| o >= fleet) {
            return None;
        }
        Some(format!(
            "no head for {} ms ({} block times of {} ms) while the fleet reached {fleet} (this provider: {}); polling instead",
            quiet.as_millis(),
            self.opts.heads.silent_blocks,
            bt.as_millis(),
            own.map_or_else(|| "none".into(), |o| o.to_string()),
        ))
    }
}
