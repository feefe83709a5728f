//! The chain's block time as the fleet observes it (from the fleet head's rises), for head-poll
//! scheduling and for telling a silent subscription from a quiet chain.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Intervals kept.
const KEPT: usize = 16;

/// Observed time per block.
#[derive(Debug, Default)]
pub(super) struct BlockClock {
    last: Option<(u64, Instant)>,
    /// Seconds per block of the recent rises, oldest first.
    intervals: VecDeque<Duration>,
}

impl BlockClock {
    /// The fleet head is `number` at `now`.
    pub(super) fn observe(&mut self, number: u64, now: Instant) {
        match self.last {
            Some((n, _)) if number <= n => {}
            Some((n, t)) => {
                let blocks = u32::try_from(number - n).unwrap_or(u32::MAX);
                // A jump of many heights is a catch-up, not the chain's pace.
                if blocks <= 4 {
                    self.intervals.push_back(now.saturating_duration_since(t) / blocks);
                    if self.intervals.len() > KEPT {
                        self.intervals.pop_front();
                    }
                }
                self.last = Some((number, now));
            }
            None => self.last = Some((number, now)),
        }
    }

    /// The shortest recent block time (the cautious one for skipping polls); None until three
    /// rises were seen.
    pub(super) fn shortest(&self) -> Option<Duration> {
        (self.intervals.len() >= 3).then(|| self.intervals.iter().min().copied()).flatten()
    }

    /// The median recent block time; None until three rises were seen.
    pub(super) fn typical(&self) -> Option<Duration> {
        if self.intervals.len() < 3 {
            return None;
        }
        let mut v: Vec<Duration> = self.intervals.iter().copied().collect();
        v.sort_unstable();
        Some(v[v.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_time_from_rises_ignoring_catch_up_jumps() {
        let mut c = BlockClock::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        c.observe(10, t0);
        c.observe(11, t0 + s(12));
        c.observe(12, t0 + s(24));
        assert_eq!(c.typical(), None, "two rises are not enough");
        c.observe(12, t0 + s(30));
        c.observe(14, t0 + s(46));
        assert_eq!((c.shortest(), c.typical()), (Some(s(11)), Some(s(12))));
        c.observe(500, t0 + s(47));
        assert_eq!(c.shortest(), Some(s(11)), "a jump of 486 heights is not a block time");
    }
}
