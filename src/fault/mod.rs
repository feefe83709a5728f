//! Fault injection: a scriptable JSON-RPC fault layer, run as an HTTP proxy in front of any node
//! (anvil, the simulated fleet, a real provider), with a log of every call it saw.
//!
//! The engine here decides, per JSON-RPC call, which rule (if any) applies; [`proxy`] carries it
//! out on the wire. Rules can be swapped at run time (`FaultProxy::set_script`, or
//! `POST /__fault/script` with a JSON script).

mod http1;
pub mod proxy;
mod rewrite;
mod script;

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

pub use proxy::{FaultProxy, ProxyError};
pub use script::{Fault, Rule, Script, ScriptError};

/// One call the proxy saw, and what it did to it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoggedCall {
    /// Milliseconds since the proxy started.
    pub at_ms: u64,
    pub method: String,
    /// The height asked for, when the call names one.
    pub height: Option<u64>,
    /// Part of a JSON-RPC batch.
    pub batch: bool,
    /// `rule-name:kind` of the fault applied, if any.
    pub fault: Option<String>,
}

/// A rule's run-time state.
#[derive(Debug, Default)]
struct RuleState {
    applied: u64,
    frozen_head: Option<u64>,
    backwards_flip: bool,
}

/// The decision for one call.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub rule: String,
    pub fault: Fault,
    /// For head faults: how to derive the served head from the upstream head.
    pub head: HeadView,
}

/// How a head fault bends the upstream head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadView {
    Real,
    Behind(u64),
    Frozen(Option<u64>),
}

#[derive(Debug)]
struct EngineState {
    script: Script,
    rules: Vec<RuleState>,
    rng: fastrand::Rng,
    loaded: Instant,
    log: Vec<LoggedCall>,
}

/// The rule engine: thread-safe, cheap critical sections.
#[derive(Debug)]
pub(crate) struct Engine {
    started: Instant,
    state: Mutex<EngineState>,
}

/// Cap on the in-memory log so a long-running proxy cannot grow without bound.
const LOG_CAP: usize = 1_000_000;

impl Engine {
    pub(crate) fn new(script: Script) -> Self {
        let now = Instant::now();
        let rules = script.rules.iter().map(|_| RuleState::default()).collect();
        let rng = fastrand::Rng::with_seed(script.seed);
        Self { started: now, state: Mutex::new(EngineState { script, rules, rng, loaded: now, log: Vec::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EngineState> {
        // The state holds counters and a log; a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn set_script(&self, script: Script) {
        let mut g = self.lock();
        g.rules = script.rules.iter().map(|_| RuleState::default()).collect();
        g.rng = fastrand::Rng::with_seed(script.seed);
        g.script = script;
        g.loaded = Instant::now();
    }

    pub(crate) fn script(&self) -> Script {
        self.lock().script.clone()
    }

    pub(crate) fn log(&self) -> Vec<LoggedCall> {
        self.lock().log.clone()
    }

    pub(crate) fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// Label log entries `idx` with `label`: every call of an HTTP exchange a transport fault
    /// took down carries it, so per-call counts match what the client saw.
    pub(crate) fn relabel(&self, idx: &[usize], label: &str) {
        let mut g = self.lock();
        for &i in idx {
            if let Some(c) = g.log.get_mut(i) {
                c.fault = Some(label.to_string());
            }
        }
    }

    /// Decide for one call and log it; also returns the log index (if logged).
    pub(crate) fn decide_logged(
        &self,
        method: &str,
        height: Option<u64>,
        batch: bool,
    ) -> (Option<Decision>, Option<usize>) {
        let d = self.decide(method, height, batch);
        let len = self.lock().log.len();
        (d, len.checked_sub(1))
    }

    /// Decide for one call and log it.
    pub(crate) fn decide(&self, method: &str, height: Option<u64>, batch: bool) -> Option<Decision> {
        let mut g = self.lock();
        let since_load = u64::try_from(g.loaded.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut chosen = None;
        for i in 0..g.script.rules.len() {
            let r = &g.script.rules[i];
            if !r.methods.is_empty() && !r.methods.iter().any(|m| m == method) {
                continue;
            }
            if r.from_height.is_some() || r.to_height.is_some() {
                let Some(h) = height else { continue };
                if r.from_height.is_some_and(|a| h < a) || r.to_height.is_some_and(|b| h > b) {
                    continue;
                }
            }
            if r.after_ms.is_some_and(|a| since_load < a) || r.until_ms.is_some_and(|b| since_load >= b) {
                continue;
            }
            if r.count.is_some_and(|c| g.rules[i].applied >= c) {
                continue;
            }
            let p = r.probability;
            if p < 1.0 && g.rng.f64() >= p {
                continue;
            }
            chosen = Some(i);
            break;
        }
        let decision = chosen.map(|i| {
            let rule = g.script.rules[i].clone();
            let st = &mut g.rules[i];
            st.applied += 1;
            let head = match rule.fault {
                Fault::HeadLag { blocks } => HeadView::Behind(blocks),
                Fault::FreezeHead => HeadView::Frozen(st.frozen_head),
                Fault::HeadBackwards { blocks } => {
                    st.backwards_flip = !st.backwards_flip;
                    if st.backwards_flip { HeadView::Behind(blocks) } else { HeadView::Real }
                }
                _ => HeadView::Real,
            };
            Decision { rule: rule.name, fault: rule.fault, head }
        });
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if g.log.len() < LOG_CAP {
            g.log.push(LoggedCall {
                at_ms,
                method: method.to_string(),
                height,
                batch,
                fault: decision.as_ref().map(|d| format!("{}:{}", d.rule, d.fault.kind())),
            });
        }
        decision
    }

    /// Remember the head a `freeze_head` rule first served.
    pub(crate) fn freeze(&self, rule: &str, head: u64) -> u64 {
        let mut g = self.lock();
        let Some(i) = g.script.rules.iter().position(|r| r.name == rule) else { return head };
        *g.rules[i].frozen_head.get_or_insert(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins_with_filters_and_counts() {
        let script = Script {
            seed: 1,
            rules: vec![
                Rule::always("range", Fault::NullResult).methods(&["eth_getBlockByNumber"]).heights(10, 20).count(2),
                Rule::always("all", Fault::Delay { ms: 1 }),
            ],
        };
        let e = Engine::new(script);
        let kind = |h| e.decide("eth_getBlockByNumber", h, false).map(|d| d.rule);
        assert_eq!(kind(Some(5)).as_deref(), Some("all"));
        assert_eq!(kind(Some(10)).as_deref(), Some("range"));
        assert_eq!(kind(Some(20)).as_deref(), Some("range"));
        // count exhausted
        assert_eq!(kind(Some(15)).as_deref(), Some("all"));
        // a height filter never matches a call without a height
        assert_eq!(kind(None).as_deref(), Some("all"));
        assert_eq!(e.log().len(), 5);
        assert_eq!(e.log()[1].fault.as_deref(), Some("range:null_result"));
    }

    #[test]
    fn probability_is_seeded_and_roughly_right() {
        let run = || {
            let e = Engine::new(Script::single(Rule::always("p", Fault::Empty).probability(0.3)));
            (0..2000).filter(|_| e.decide("m", None, false).is_some()).count()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same rolls");
        assert!((450..750).contains(&a), "{a} of 2000 at p=0.3");
    }

    #[test]
    fn head_backwards_alternates_and_freeze_remembers() {
        let e = Engine::new(Script {
            seed: 0,
            rules: vec![
                Rule::always("back", Fault::HeadBackwards { blocks: 3 }).methods(&["eth_blockNumber"]),
                Rule::always("frozen", Fault::FreezeHead),
            ],
        });
        let views: Vec<_> = (0..4).map(|_| e.decide("eth_blockNumber", None, false).map(|d| d.head)).collect();
        assert_eq!(
            views,
            vec![Some(HeadView::Behind(3)), Some(HeadView::Real), Some(HeadView::Behind(3)), Some(HeadView::Real)]
        );
        assert_eq!(e.freeze("frozen", 100), 100);
        assert_eq!(e.freeze("frozen", 120), 100);
        let d = e.decide("eth_getBlockByNumber", Some(1), false).map(|d| d.head);
        assert_eq!(d, Some(HeadView::Frozen(Some(100))));
    }
}
