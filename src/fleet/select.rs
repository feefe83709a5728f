//! Provider scoring, the selection strategies and the sticky primary: which eligible provider
//! to ask first.
//!
//! The score (higher is better) is eRPC-shaped: `weight / (1 + Σ penalty)`, with
//! penalties from the rolling window, the head and the integrity memory:
//!   `2·p95_s + 10·error_rate + 3·throttle_rate + 0.5·lag_blocks + 2·[half-open]
//!    + 1·[over budget pace] + integrity`.
//! A provider with fewer than 5 successes in the window has no latency penalty yet, so new and
//! re-admitted providers get traffic and can earn a figure. `integrity` is 5 per forged or
//! inconsistent block, each fading linearly to 0 over `integrity_memory_secs`.

use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::config::Strategy;
use crate::config::Tier;
use crate::model::ProviderId;

/// The parts of a score, kept so a decision can be explained (`/v1/providers` shows them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ScoreParts {
    pub weight: f64,
    pub latency: f64,
    pub errors: f64,
    pub throttles: f64,
    pub lag: f64,
    pub probing: f64,
    pub budget: f64,
    /// Forged or inconsistent blocks remembered (fades over `integrity_memory_secs`).
    pub integrity: f64,
}

impl ScoreParts {
    /// `weight / (1 + Σ penalties)`.
    pub fn score(&self) -> f64 {
        self.weight
            / (1.0
                + self.latency
                + self.errors
                + self.throttles
                + self.lag
                + self.probing
                + self.budget
                + self.integrity)
    }

    /// A forgery is still remembered: never the sticky primary while a clean provider is eligible.
    pub fn tainted(&self) -> bool {
        self.integrity > 0.0
    }
}

/// What a score is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreInputs {
    pub weight: f64,
    pub p95_ms: Option<f64>,
    pub error_rate: f64,
    pub throttle_rate: f64,
    pub lag_blocks: u64,
    pub half_open: bool,
    pub over_pace: bool,
    /// Σ over remembered forgeries of their weight now (1 just after, 0 once forgotten).
    pub forgeries: f64,
}

/// Penalty per freshly remembered forgery.
const INTEGRITY_WEIGHT: f64 = 5.0;

/// Score parts from window figures.
pub fn parts(i: &ScoreInputs) -> ScoreParts {
    #[allow(clippy::cast_precision_loss)]
    let lag = i.lag_blocks.min(1000) as f64;
    ScoreParts {
        weight: if i.weight > 0.0 { i.weight } else { 1.0 },
        latency: 2.0 * i.p95_ms.unwrap_or(0.0) / 1000.0,
        errors: 10.0 * i.error_rate,
        throttles: 3.0 * i.throttle_rate,
        lag: 0.5 * lag,
        probing: if i.half_open { 2.0 } else { 0.0 },
        budget: if i.over_pace { 1.0 } else { 0.0 },
        integrity: INTEGRITY_WEIGHT * i.forgeries.clamp(0.0, 10.0),
    }
}

/// What selection needs to know about one eligible provider.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: ProviderId,
    pub tier: Tier,
    pub parts: ScoreParts,
    /// Price of this call in USD (credits × price per credit).
    pub price: f64,
    /// Spending faster than the budget allows for this point of the day.
    pub over_pace: bool,
}

fn tier_rank(t: Tier) -> u8 {
    match t {
        Tier::Primary => 0,
        Tier::Fallback => 1,
    }
}

/// Order `cands` for `strategy`. `rotation` drives round-robin. For `best` and `cheapest` a
/// provider whose forgeries are still remembered goes after every clean one.
pub fn order(strategy: Strategy, mut cands: Vec<Candidate>, rotation: usize) -> Vec<Candidate> {
    let by_score = |a: &Candidate, b: &Candidate| b.parts.score().total_cmp(&a.parts.score());
    match strategy {
        Strategy::Best => cands.sort_by(|a, b| {
            a.parts
                .tainted()
                .cmp(&b.parts.tainted())
                .then_with(|| tier_rank(a.tier).cmp(&tier_rank(b.tier)))
                .then_with(|| by_score(a, b))
        }),
        Strategy::Cheapest => cands.sort_by(|a, b| {
            a.parts
                .tainted()
                .cmp(&b.parts.tainted())
                .then_with(|| a.over_pace.cmp(&b.over_pace))
                .then_with(|| a.price.total_cmp(&b.price))
                .then_with(|| by_score(a, b))
        }),
        Strategy::Priority => cands.sort_by_key(|c| (tier_rank(c.tier), c.id)),
        Strategy::RoundRobin => {
            cands.sort_by_key(|c| c.id);
            if !cands.is_empty() {
                let k = rotation % cands.len();
                cands.rotate_left(k);
            }
        }
    }
    cands
}

/// Why the sticky primary changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Switch {
    /// There was none yet.
    First,
    /// The new one scores better by more than the margin, and the old one held long enough.
    Better { old: ProviderId, score: f64, old_score: f64 },
    /// The old one is not eligible at all any more (excluded, breaker, cooldown, budget).
    NotEligible { old: ProviderId },
    /// The old one forged a block that is still remembered, and a clean provider is eligible.
    Tainted { old: ProviderId },
}

/// The sticky primary of the `best` strategy, with hysteresis.
#[derive(Debug)]
pub(super) struct Primary {
    current: Option<ProviderId>,
    since: Instant,
    /// A challenger must score better by this fraction…
    margin: f64,
    /// …and the primary must have held this long (an ineligible or tainted one goes at once).
    min_interval: Duration,
}

impl Primary {
    pub(super) fn new(margin: f64, min_interval: Duration, now: Instant) -> Self {
        Self { current: None, since: now, margin, min_interval }
    }

    /// The primary now.
    pub(super) fn current(&self) -> Option<ProviderId> {
        self.current
    }

    /// Would a provider scoring `challenger` be worth waiting for instead of the primary's
    /// `primary` score?
    pub(super) fn clearly_better(&self, challenger: f64, primary: f64) -> bool {
        challenger > primary * (1.0 + self.margin)
    }

    /// Keep the primary first in `order` (already sorted by the strategy; tainted providers
    /// last, and never made primary) unless the first candidate is clearly better and the primary has held for a while, the primary is no
    /// longer eligible, or it is tainted while the first candidate is clean. `short` are
    /// providers that are eligible but have not reported the height asked for: a primary among
    /// them stays primary while another provider serves this request. Returns the new primary
    /// and why, when it changed.
    pub(super) fn keep(
        &mut self,
        order: &mut [Candidate],
        short: &[ProviderId],
        now: Instant,
    ) -> Option<(ProviderId, Switch)> {
        let best = order.first().copied()?;
        // A provider caught forging serves a request when no clean one can, but never becomes
        // the primary: the primary stays (or stays unset) until a clean provider takes over.
        if best.parts.tainted() {
            return None;
        }
        let switch = match self.current {
            Some(cur) if cur == best.id => None,
            Some(cur) => match order.iter().position(|c| c.id == cur) {
                Some(pos) => {
                    let cur_c = order[pos];
                    if cur_c.parts.tainted() && !best.parts.tainted() {
                        Some(Switch::Tainted { old: cur })
                    } else if self.clearly_better(best.parts.score(), cur_c.parts.score())
                        && now.saturating_duration_since(self.since) >= self.min_interval
                    {
                        Some(Switch::Better { old: cur, score: best.parts.score(), old_score: cur_c.parts.score() })
                    } else {
                        order[..=pos].rotate_right(1);
                        None
                    }
                }
                // Still healthy, just has not seen this height yet: serve elsewhere, stay primary.
                None if short.contains(&cur) => None,
                None => Some(Switch::NotEligible { old: cur }),
            },
            None => Some(Switch::First),
        };
        let switch = switch?;
        self.current = Some(best.id);
        self.since = now;
        Some((best.id, switch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(p95: f64, err: f64) -> ScoreInputs {
        ScoreInputs { weight: 1.0, p95_ms: Some(p95), error_rate: err, ..ScoreInputs::default() }
    }

    fn cand(id: u16, tier: Tier, p95: f64, err: f64, price: f64) -> Candidate {
        Candidate { id: ProviderId(id), tier, parts: parts(&inputs(p95, err)), price, over_pace: false }
    }

    fn ids(v: &[Candidate]) -> Vec<u16> {
        v.iter().map(|c| c.id.0).collect()
    }

    #[test]
    fn strategies_order_as_documented() {
        let cs = vec![
            cand(0, Tier::Fallback, 10.0, 0.0, 0.0),
            cand(1, Tier::Primary, 800.0, 0.0, 5.0),
            cand(2, Tier::Primary, 50.0, 0.02, 1.0),
        ];
        assert_eq!(ids(&order(Strategy::Best, cs.clone(), 0)), [2, 1, 0]);
        assert_eq!(ids(&order(Strategy::Cheapest, cs.clone(), 0)), [0, 2, 1]);
        assert_eq!(ids(&order(Strategy::Priority, cs.clone(), 0)), [1, 2, 0]);
        assert_eq!(ids(&order(Strategy::RoundRobin, cs.clone(), 1)), [1, 2, 0]);
        assert_eq!(ids(&order(Strategy::RoundRobin, cs, 5)), [2, 0, 1]);
    }

    #[test]
    fn score_falls_with_each_penalty() {
        let base = parts(&inputs(100.0, 0.0)).score();
        let with = |f: &dyn Fn(&mut ScoreInputs)| {
            let mut i = inputs(100.0, 0.0);
            f(&mut i);
            parts(&i).score()
        };
        assert!(with(&|i| i.p95_ms = Some(2000.0)) < base);
        assert!(with(&|i| i.error_rate = 0.1) < base);
        assert!(with(&|i| i.lag_blocks = 4) < base);
        assert!(with(&|i| i.half_open = true) < base);
        assert!(with(&|i| i.over_pace = true) < base);
        assert!(with(&|i| i.forgeries = 0.5) < base);
        assert!(with(&|i| i.weight = 2.0) > base);
    }

    #[test]
    fn a_tainted_provider_goes_after_every_clean_one_even_a_fallback() {
        let mut liar = cand(0, Tier::Primary, 5.0, 0.0, 0.0);
        liar.parts.weight = 3.0;
        liar.parts.integrity = 0.1;
        let honest = cand(1, Tier::Fallback, 500.0, 0.0, 1.0);
        assert!(liar.parts.score() > honest.parts.score(), "the liar would win on score alone");
        assert_eq!(ids(&order(Strategy::Best, vec![liar, honest], 0)), [1, 0]);
        assert_eq!(ids(&order(Strategy::Cheapest, vec![liar, honest], 0)), [1, 0]);
    }

    #[test]
    fn a_tainted_provider_serves_when_alone_but_is_never_made_primary() {
        let t0 = Instant::now();
        let mut liar = cand(4, Tier::Primary, 5.0, 0.0, 0.0);
        liar.parts.integrity = 0.1;
        let steady = cand(0, Tier::Primary, 50.0, 0.0, 0.0);
        let mut p = Primary::new(0.2, Duration::from_secs(30), t0);
        assert_eq!(p.keep(&mut [steady], &[], t0).map(|s| s.0), Some(ProviderId(0)));
        // steady is out for a moment (breaker, cooldown): only the liar can serve.
        let mut only = [liar];
        assert_eq!(p.keep(&mut only, &[], t0 + Duration::from_secs(1)), None);
        assert_eq!(ids(&only), [4], "it serves this request");
        assert_eq!(p.current(), Some(ProviderId(0)), "but steady stays the primary");
        // From no primary at all, the liar is not made the first one either.
        let mut fresh = Primary::new(0.2, Duration::from_secs(30), t0);
        assert_eq!(fresh.keep(&mut [liar], &[], t0), None);
        assert_eq!(fresh.current(), None);
        assert_eq!(fresh.keep(&mut [steady, liar], &[], t0).map(|s| s.0), Some(ProviderId(0)));
    }

    #[test]
    fn keep_sticky_holds_the_primary_until_a_challenger_is_clearly_better_for_long_enough() {
        let t0 = Instant::now();
        let mut p = Primary::new(0.2, Duration::from_secs(10), t0);
        let a = cand(0, Tier::Primary, 100.0, 0.0, 0.0);
        let b = cand(1, Tier::Primary, 90.0, 0.0, 0.0);
        assert_eq!(p.keep(&mut [a, b], &[], t0), Some((ProviderId(0), Switch::First)));
        // b is slightly better: a stays first
        let mut o = [b, a];
        assert_eq!(p.keep(&mut o, &[], t0 + Duration::from_secs(60)), None);
        assert_eq!(ids(&o), [0, 1]);
        // c is clearly better, but the primary only just took over
        let mut p = Primary::new(0.2, Duration::from_secs(10), t0);
        let slow = cand(0, Tier::Primary, 500.0, 0.0, 0.0);
        p.keep(&mut [slow], &[], t0);
        let c = cand(2, Tier::Primary, 1.0, 0.0, 0.0);
        let mut o = [c, slow];
        assert_eq!(p.keep(&mut o, &[], t0 + Duration::from_secs(1)), None);
        assert_eq!(ids(&o), [0, 2]);
        let mut o = [c, slow];
        let (to, why) = p.keep(&mut o, &[], t0 + Duration::from_secs(10)).unwrap_or((ProviderId(9), Switch::First));
        assert_eq!(to, ProviderId(2));
        assert!(matches!(why, Switch::Better { old: ProviderId(0), .. }), "{why:?}");
        assert_eq!(p.current(), Some(ProviderId(2)));
    }

    #[test]
    fn keep_sticky_replaces_an_ineligible_or_tainted_primary_at_once_but_not_a_short_one() {
        let t0 = Instant::now();
        let mut p = Primary::new(0.2, Duration::from_secs(10), t0);
        let a = cand(0, Tier::Primary, 100.0, 0.0, 0.0);
        let b = cand(1, Tier::Primary, 100.0, 0.0, 0.0);
        p.keep(&mut [a, b], &[], t0);
        // a has not reported the height: b serves, a stays primary
        assert_eq!(p.keep(&mut [b], &[ProviderId(0)], t0), None);
        assert_eq!(p.current(), Some(ProviderId(0)));
        // a is gone (breaker open): b at once
        assert_eq!(p.keep(&mut [b], &[], t0), Some((ProviderId(1), Switch::NotEligible { old: ProviderId(0) })));
        // b forges a block while a is back and clean: a at once, even within the interval
        let mut tainted = b;
        tainted.parts.integrity = 5.0;
        let mut o = order(Strategy::Best, vec![tainted, a], 0);
        assert_eq!(p.keep(&mut o, &[], t0), Some((ProviderId(0), Switch::Tainted { old: ProviderId(1) })));
        // when every candidate is tainted, the primary holds as usual
        let mut p = Primary::new(0.2, Duration::from_secs(10), t0);
        let mut ta = a;
        ta.parts.integrity = 1.0;
        p.keep(&mut [tainted], &[], t0);
        assert_eq!(p.keep(&mut [ta, tainted], &[], t0), None);
    }
}
