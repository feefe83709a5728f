//! What a provider was found to support, learned from its answers: per method yes / no /
//! unknown, and the widest `eth_getLogs` block range it accepts. Each change is queued once for
//! the fleet to record (a provider event and a `provider_capabilities` row); a "no" is asked
//! again after [`RECHECK_AFTER`], since providers add methods.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{CapabilityMethod, CapabilityRecord, ProviderId};

/// Whether a provider supports a method, as far as is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Unknown,
    Yes,
    No,
}

impl Support {
    /// The shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Yes => "yes",
            Self::No => "no",
        }
    }
}

/// How long a learned "not supported" is trusted before the method is tried once more.
pub(super) const RECHECK_AFTER: Duration = Duration::from_secs(3600);

/// What a provider was found to support (shown in `/v1/providers/{name}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// JSON-RPC batches accepted (cleared when the provider refuses them).
    pub batches: bool,
    #[serde(rename = "eth_getBlockReceipts")]
    pub block_receipts: Support,
    #[serde(rename = "eth_getLogs")]
    pub logs: Support,
    /// Widest `eth_getLogs` range (blocks) known to be accepted, after a range error.
    pub logs_max_range: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    support: Support,
    at: Option<Instant>,
}

impl Default for Known {
    fn default() -> Self {
        Self { support: Support::Unknown, at: None }
    }
}

#[derive(Debug, Default)]
struct State {
    block_receipts: Known,
    logs: Known,
    logs_max_range: Option<u64>,
    untold: Vec<CapabilityRecord>,
}

/// Learned support, updated from answers (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Learned(Mutex<State>);

impl Learned {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain values.
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Whether `m` should be tried: not known to be missing, or known so long ago that it is
    /// worth one more try.
    pub(super) fn worth_trying(&self, m: CapabilityMethod) -> bool {
        self.with(|s| {
            let k = s.known(m);
            k.support != Support::No || k.at.is_none_or(|t| t.elapsed() >= RECHECK_AFTER)
        })
    }

    /// An answer of `m` worked; tells when that is news.
    pub(super) fn works(&self, id: ProviderId, m: CapabilityMethod) {
        self.set(id, m, Support::Yes, None, || format!("{} works", m.as_str()));
    }

    /// `m` is not served here; tells when that is news.
    pub(super) fn lacks(&self, id: ProviderId, m: CapabilityMethod, why: &str) {
        self.set(id, m, Support::No, None, || format!("{} is not supported ({why})", m.as_str()));
    }

    /// `eth_getLogs` refused a range wider than `max` blocks.
    pub(super) fn logs_range(&self, id: ProviderId, max: u64, why: &str) {
        let news = self.with(|s| {
            let narrower = s.logs_max_range.is_none_or(|m| max < m);
            if narrower {
                s.logs_max_range = Some(max);
            }
            narrower
        });
        if news {
            self.set(id, CapabilityMethod::Logs, Support::Yes, Some(max), || {
                format!("eth_getLogs accepts at most {max} blocks per call ({why})")
            });
        }
    }

    fn set(
        &self,
        id: ProviderId,
        m: CapabilityMethod,
        support: Support,
        range: Option<u64>,
        detail: impl FnOnce() -> String,
    ) {
        self.with(|s| {
            let max_range = range.or(s.logs_max_range).filter(|_| m == CapabilityMethod::Logs);
            let k = s.known_mut(m);
            let news = k.support != support || range.is_some();
            let notable = support == Support::No || k.support == Support::No || range.is_some();
            *k = Known { support, at: Some(Instant::now()) };
            if news {
                s.untold.push(CapabilityRecord {
                    ts_ms: crate::types::now_ms(),
                    provider: id,
                    method: m,
                    supported: support == Support::Yes,
                    max_range,
                    detail: detail(),
                    notable,
                });
            }
        });
    }

    /// What is known (or was learned by an earlier run), without telling it again.
    pub(super) fn assume(&self, r: &CapabilityRecord) {
        self.with(|s| {
            let support = if r.supported { Support::Yes } else { Support::No };
            *s.known_mut(r.method) = Known { support, at: Some(Instant::now()) };
            if r.method == CapabilityMethod::Logs {
                s.logs_max_range = r.max_range;
            }
        });
    }

    /// The changes learned since the last call, once each.
    pub(super) fn take_untold(&self) -> Vec<CapabilityRecord> {
        self.with(|s| std::mem::take(&mut s.untold))
    }

    pub(super) fn snapshot(&self, batches: bool) -> Capabilities {
        self.with(|s| Capabilities {
            batches,
            block_receipts: s.block_receipts.support,
            logs: s.logs.support,
            logs_max_range: s.logs_max_range,
        })
    }

    /// The widest range to ask `eth_getLogs` for, within `wanted`.
    pub(super) fn logs_span(&self, wanted: u64) -> u64 {
        self.with(|s| s.logs_max_range.map_or(wanted, |m| m.min(wanted)).max(1))
    }
}

impl State {
    fn known(&self, m: CapabilityMethod) -> Known {
        match m {
            CapabilityMethod::BlockReceipts => self.block_receipts,
            CapabilityMethod::Logs => self.logs,
        }
    }

    fn known_mut(&mut self, m: CapabilityMethod) -> &mut Known {
        match m {
            CapabilityMethod::BlockReceipts => &mut self.block_receipts,
            CapabilityMethod::Logs => &mut self.logs,
        }
    }
}

impl super::Provider {
    /// What this provider was found to support.
    pub fn capabilities(&self) -> Capabilities {
        self.caps.snapshot(self.batches_ok.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Take what an earlier run learned (from the store) as known.
    pub fn assume(&self, r: &CapabilityRecord) {
        self.caps.assume(r);
    }

    /// What was learned since the last call, once each: for the fleet to record.
    pub fn take_learned(&self) -> Vec<CapabilityRecord> {
        self.caps.take_untold()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_told_once_and_a_no_is_trusted_for_an_hour() {
        let l = Learned::default();
        let id = ProviderId(3);
        assert!(l.worth_trying(CapabilityMethod::BlockReceipts));
        l.lacks(id, CapabilityMethod::BlockReceipts, "-32601");
        l.lacks(id, CapabilityMethod::BlockReceipts, "-32601");
        let told = l.take_untold();
        assert_eq!(told.len(), 1);
        assert!(!told[0].supported && told[0].method == CapabilityMethod::BlockReceipts);
        assert!(!l.worth_trying(CapabilityMethod::BlockReceipts));
        assert!(l.take_untold().is_empty());
        l.works(id, CapabilityMethod::BlockReceipts);
        assert_eq!(l.take_untold().len(), 1, "support found again is news");
    }

    #[test]
    fn only_a_narrower_range_is_news() {
        let l = Learned::default();
        let id = ProviderId(0);
        assert_eq!(l.logs_span(500), 500);
        l.logs_range(id, 100, "hint");
        l.logs_range(id, 200, "hint");
        l.logs_range(id, 50, "halved");
        let told = l.take_untold();
        assert_eq!(told.iter().map(|r| r.max_range).collect::<Vec<_>>(), vec![Some(100), Some(50)]);
        assert_eq!(l.logs_span(500), 50);
        assert_eq!(l.logs_span(10), 10);
        assert_eq!(l.snapshot(true).logs_max_range, Some(50));
    }
}
