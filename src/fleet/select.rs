//! Provider scoring and the selection strategies: which eligible provider to ask first.
//!
//! The score (higher is better) is eRPC-shaped: `weight / (1 + Σ penalty)`, with
//! penalties from the rolling window and the head:
//!   `2·p95_s + 10·error_rate + 3·throttle_rate + 0.5·lag_blocks + 2·[half-open] + 1·[over budget pace]`.
//! A provider with fewer than 5 successes in the window has no latency penalty yet, so new and
//! re-admitted providers get traffic and can earn a figure.

pub use crate::config::Strategy;
use crate::config::Tier;

/// The parts of a score, kept so a decision can be explained.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreParts {
    pub latency: f64,
    pub errors: f64,
    pub throttles: f64,
    pub lag: f64,
    pub probing: f64,
    pub budget: f64,
    pub weight: f64,
}

impl ScoreParts {
    /// `weight / (1 + Σ penalties)`.
    pub fn score(&self) -> f64 {
        self.weight / (1.0 + self.latency + self.errors + self.throttles + self.lag + self.probing + self.budget)
    }
}

/// What selection needs to know about one eligible provider.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub index: usize,
    pub tier: Tier,
    pub parts: ScoreParts,
    /// Price of this call in USD (credits × price per credit).
    pub price: f64,
    /// Spending faster than the budget allows for this point of the day.
    pub over_pace: bool,
}

/// Score parts from window figures.
pub fn parts(
    weight: f64,
    p95_ms: Option<f64>,
    error_rate: f64,
    throttle_rate: f64,
    lag_blocks: u64,
    half_open: bool,
    over_pace: bool,
) -> ScoreParts {
    #[allow(clippy::cast_precision_loss)]
    let lag = lag_blocks.min(1000) as f64;
    ScoreParts {
        latency: 2.0 * p95_ms.unwrap_or(0.0) / 1000.0,
        errors: 10.0 * error_rate,
        throttles: 3.0 * throttle_rate,
        lag: 0.5 * lag,
        probing: if half_open { 2.0 } else { 0.0 },
        budget: if over_pace { 1.0 } else { 0.0 },
        weight: if weight > 0.0 { weight } else { 1.0 },
    }
}

fn tier_rank(t: Tier) -> u8 {
    match t {
        Tier::Primary => 0,
        Tier::Fallback => 1,
    }
}

/// Order `cands` for `strategy`. `rotation` drives round-robin.
pub fn order(strategy: Strategy, mut cands: Vec<Candidate>, rotation: usize) -> Vec<Candidate> {
    let by_score = |a: &Candidate, b: &Candidate| b.parts.score().total_cmp(&a.parts.score());
    match strategy {
        Strategy::Best => cands.sort_by(|a, b| tier_rank(a.tier).cmp(&tier_rank(b.tier)).then_with(|| by_score(a, b))),
        Strategy::Cheapest => cands.sort_by(|a, b| {
            a.over_pace.cmp(&b.over_pace).then_with(|| a.price.total_cmp(&b.price)).then_with(|| by_score(a, b))
        }),
        Strategy::Priority => cands.sort_by_key(|c| (tier_rank(c.tier), c.index)),
        Strategy::RoundRobin => {
            cands.sort_by_key(|c| c.index);
            if !cands.is_empty() {
                let k = rotation % cands.len();
                cands.rotate_left(k);
            }
        }
    }
    cands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(index: usize, tier: Tier, p95: f64, err: f64, price: f64) -> Candidate {
        Candidate { index, tier, parts: parts(1.0, Some(p95), err, 0.0, 0, false, false), price, over_pace: false }
    }

    fn idx(v: Vec<Candidate>) -> Vec<usize> {
        v.into_iter().map(|c| c.index).collect()
    }

    #[test]
    fn strategies_order_as_documented() {
        let cs = vec![
            cand(0, Tier::Fallback, 10.0, 0.0, 0.0),
            cand(1, Tier::Primary, 800.0, 0.0, 5.0),
            cand(2, Tier::Primary, 50.0, 0.02, 1.0),
        ];
        assert_eq!(idx(order(Strategy::Best, cs.clone(), 0)), [2, 1, 0]);
        assert_eq!(idx(order(Strategy::Cheapest, cs.clone(), 0)), [0, 2, 1]);
        assert_eq!(idx(order(Strategy::Priority, cs.clone(), 0)), [1, 2, 0]);
        assert_eq!(idx(order(Strategy::RoundRobin, cs.clone(), 1)), [1, 2, 0]);
        assert_eq!(idx(order(Strategy::RoundRobin, cs, 5)), [2, 0, 1]);
    }

    #[test]
    fn score_falls_with_each_penalty() {
        let base = parts(1.0, Some(100.0), 0.0, 0.0, 0, false, false).score();
        assert!(parts(1.0, Some(2000.0), 0.0, 0.0, 0, false, false).score() < base);
        assert!(parts(1.0, Some(100.0), 0.1, 0.0, 0, false, false).score() < base);
        assert!(parts(1.0, Some(100.0), 0.0, 0.0, 4, false, false).score() < base);
        assert!(parts(1.0, Some(100.0), 0.0, 0.0, 0, true, false).score() < base);
        assert!(parts(2.0, Some(100.0), 0.0, 0.0, 0, false, false).score() > base);
    }
}
