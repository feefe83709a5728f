//! The fleet head: decided from the heads the providers reported, with fork voting, a guard
//! against one provider far ahead of the rest, and confirmation before moving to another branch;
//! and each provider's lag behind it.
//!
//! Pure: fed plain [`HeadReport`]s and the time, so every rule is unit-tested without providers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy_primitives::B256;

use crate::model::ProviderId;

/// How long a minority branch at the top must stand before the fleet head moves to it.
const FORK_CONFIRM: Duration = Duration::from_secs(1);

/// How long a provider may be more than `max_lag_blocks` behind before it counts as lagging.
const LAG_GRACE: Duration = Duration::from_secs(1);

/// Heights whose first sighting is remembered (for lag in seconds).
const FIRST_SEEN_KEPT: usize = 1024;

/// The best head across the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetHead {
    pub number: u64,
    /// Unknown when every provider at the top reported its height only (`eth_blockNumber`).
    pub hash: Option<B256>,
    /// A provider that reported it.
    pub provider: ProviderId,
}

/// One provider's latest head, as the tracker is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HeadReport {
    pub(super) provider: ProviderId,
    pub(super) number: u64,
    /// The block's hash and parent when the report carried them (a header or a notification;
    /// an `eth_blockNumber` poll does not).
    pub(super) hash: Option<B256>,
    pub(super) parent_hash: Option<B256>,
    /// Reported recently by a provider whose breaker is not open: only fresh heads may out-vote
    /// another head (a dead provider's last head is old news).
    pub(super) fresh: bool,
}

/// A provider whose head was not believed: it is far ahead of every other fresh head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Distrusted {
    pub(super) provider: ProviderId,
    pub(super) head: u64,
    pub(super) next: u64,
}

/// One provider's distance behind the fleet head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lag {
    pub(super) blocks: u64,
    /// More than `max_lag_blocks` behind for longer than the grace period (and still behind).
    pub(super) lagging: bool,
    /// Since when (by report time) it has been more than `max_lag_blocks` behind.
    pub(super) beyond_since: Option<Instant>,
}

/// Decides the fleet head.
#[derive(Debug)]
pub(super) struct HeadTracker {
    max_head_lead: u64,
    max_lag_blocks: u64,
    current: Option<FleetHead>,
    /// A head on another branch waiting for confirmation, and since when.
    pending_fork: Option<(B256, Instant)>,
    /// When each recent fleet-head height was first reported.
    first_seen: BTreeMap<u64, Instant>,
}

impl HeadTracker {
    /// A head more than `max_head_lead` above every other fresh head is not believed; a
    /// provider more than `max_lag_blocks` behind (past a grace period) is lagging.
    pub(super) fn new(max_head_lead: u64, max_lag_blocks: u64) -> Self {
        Self { max_head_lead, max_lag_blocks, current: None, pending_fork: None, first_seen: BTreeMap::new() }
    }

    /// Decide the fleet head from `reports` at `now`. Returns the head and, when the highest
    /// report was not believed, whose it was.
    pub(super) fn publish(&mut self, reports: &[HeadReport], now: Instant) -> (Option<FleetHead>, Option<Distrusted>) {
        let mut heads = reports.to_vec();
        heads.sort_by_key(|h| std::cmp::Reverse(h.number));
        let (top, distrusted) = self.believable_top(&heads);
        let voted = top.map(|t| self.vote(&heads, t));
        let head = self.confirm_fork_switch(voted, &heads, now);
        if let Some(h) = head {
            self.first_seen.entry(h.number).or_insert(now);
            while self.first_seen.len() > FIRST_SEEN_KEPT {
                self.first_seen.pop_first();
            }
        }
        self.current = head;
        (head, distrusted)
    }

    /// The highest head, unless it is far ahead of every other fresh one: that is more likely a
    /// liar or another network than a lone honest node, so the runner-up is believed instead.
    fn believable_top(&self, sorted: &[HeadReport]) -> (Option<HeadReport>, Option<Distrusted>) {
        let Some(a) = sorted.first() else { return (None, None) };
        match sorted.iter().skip(1).find(|h| h.fresh) {
            Some(b) if a.number > b.number.saturating_add(self.max_head_lead) => {
                (Some(*b), Some(Distrusted { provider: a.provider, head: a.number, next: b.number }))
            }
            _ => (Some(*a), None),
        }
    }

    /// Providers split between branches at the top height: follow the hash most of them
    /// report; on a tie keep the one already followed, so a split view does not flip ingest
    /// between branches on every poll; then the lowest provider id.
    fn vote(&self, heads: &[HeadReport], top: HeadReport) -> FleetHead {
        // Only reports with a hash vote; heights alone cannot tell branches apart.
        let mut votes: Vec<(B256, usize, ProviderId)> = Vec::new();
        for h in heads.iter().filter(|h| h.number == top.number && (h.fresh || h.provider == top.provider)) {
            let Some(hash) = h.hash else { continue };
            match votes.iter_mut().find(|v| v.0 == hash) {
                Some(v) => v.1 += 1,
                None => votes.push((hash, 1, h.provider)),
            }
        }
        let kept =
            |v: &(B256, usize, ProviderId)| self.current.is_some_and(|c| c.number == top.number && c.hash == Some(v.0));
        let (hash, provider) = votes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| kept(a).cmp(&kept(b))).then_with(|| b.2.cmp(&a.2)))
            .map_or((top.hash, top.provider), |v| (Some(v.0), v.2));
        FleetHead { number: top.number, hash, provider }
    }

    /// A new head that does not extend the current one (another branch at the same or the next
    /// height) is believed only when most fresh providers report it, when it is at least two
    /// blocks higher, or when it has stood for `FORK_CONFIRM`. Until then the current head
    /// stays: one provider briefly ahead on a minority fork must not drag ingest back and forth.
    fn confirm_fork_switch(&mut self, new: Option<FleetHead>, heads: &[HeadReport], now: Instant) -> Option<FleetHead> {
        let (Some(cur), Some(next)) = (self.current, new) else { return new };
        // Without both hashes there is no branch to see: heights are taken as they come.
        let (Some(next_hash), Some(cur_hash)) = (next.hash, cur.hash) else {
            self.pending_fork = None;
            return new;
        };
        let parent = heads.iter().find(|h| h.hash == Some(next_hash)).and_then(|h| h.parent_hash);
        let extends = next_hash == cur_hash
            || (next.number == cur.number + 1 && parent == Some(cur_hash))
            || next.number >= cur.number + 2;
        if extends {
            self.pending_fork = None;
            return new;
        }
        // Only reports with a hash have a view on branches (a bare height abstains).
        let fresh = heads.iter().filter(|h| h.fresh && h.hash.is_some()).count();
        let agree = heads.iter().filter(|h| h.fresh && h.hash == Some(next_hash)).count();
        let since = match self.pending_fork {
            Some((h, t)) if h == next_hash => t,
            _ => {
                self.pending_fork = Some((next_hash, now));
                now
            }
        };
        if agree * 2 > fresh || now.saturating_duration_since(since) >= FORK_CONFIRM {
            self.pending_fork = None;
            new
        } else {
            Some(cur)
        }
    }

    /// How far a provider whose head was `own` when it reported it at `at` is behind the fleet
    /// head as it stood then; `was_lagging` is what it was judged last time. None while there
    /// is no fleet head. Judging at the report's time keeps a provider polled seldom (a paid
    /// standby) from looking behind merely because its last report is old.
    ///
    /// Lagging means behind by more than the limit for longer than a grace period: heads are
    /// polled one provider at a time, so right after one provider sees a burst of new blocks the
    /// others are "behind" only until their next poll.
    ///
    /// `beyond_since` is what the last judgment returned: a provider that stays a steady few
    /// blocks behind (each height reaching it late, but less than the grace period late) is
    /// lagging too once it has been behind by more than the limit for the grace period.
    pub(super) fn lag(&self, own: u64, was_lagging: bool, beyond_since: Option<Instant>, at: Instant) -> Option<Lag> {
        let head = self.head_as_of(at)?;
        let blocks = head.saturating_sub(own);
        let beyond = blocks > self.max_lag_blocks;
        let beyond_since = if beyond { Some(beyond_since.unwrap_or(at)) } else { None };
        let lagging = if was_lagging {
            beyond
        } else {
            let first_beyond = own.saturating_add(self.max_lag_blocks).saturating_add(1);
            let height_late = self
                .first_seen
                .range(first_beyond..)
                .next()
                .is_some_and(|(_, t)| at.saturating_duration_since(*t) >= LAG_GRACE);
            let long_behind = beyond_since.is_some_and(|s| at.saturating_duration_since(s) >= LAG_GRACE);
            beyond && (height_late || long_behind)
        };
        Some(Lag { blocks, lagging, beyond_since })
    }

    /// The fleet head's height at `at`: the highest height first seen by then (the current
    /// one when `at` is older than every height remembered).
    fn head_as_of(&self, at: Instant) -> Option<u64> {
        let cur = self.current?.number;
        // Highest first: the first height seen by `at` is the answer (usually the top one).
        let seen = self.first_seen.range(..=cur).rev().find(|(_, t)| **t <= at).map(|(n, _)| *n);
        Some(seen.unwrap_or(cur))
    }

    /// Seconds since the fleet first saw the height after `own` (0 when not behind).
    pub(super) fn lag_secs(&self, own: u64, now: Instant) -> f64 {
        match self.current {
            Some(h) if own < h.number => {
                self.first_seen.get(&(own + 1)).map_or(0.0, |t| now.saturating_duration_since(*t).as_secs_f64())
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> B256 {
        B256::repeat_byte(n)
    }

    /// Provider `p` at height `number` on branch `branch` (parent on the same branch).
    fn at(p: u16, number: u64, branch: u8) -> HeadReport {
        HeadReport {
            provider: ProviderId(p),
            number,
            hash: Some(hash(branch.wrapping_add(u8::try_from(number % 200).unwrap_or(0)))),
            parent_hash: Some(hash(branch.wrapping_add(u8::try_from((number + 199) % 200).unwrap_or(0)))),
            fresh: true,
        }
    }

    fn tracker() -> HeadTracker {
        HeadTracker::new(64, 3)
    }

    #[test]
    fn the_highest_fresh_head_wins_unless_it_is_far_ahead_of_everyone() {
        let mut t = tracker();
        let now = Instant::now();
        let (h, d) = t.publish(&[at(0, 10, 0), at(1, 12, 0), at(2, 11, 0)], now);
        assert_eq!(h.map(|h| (h.number, h.provider)), Some((12, ProviderId(1))));
        assert_eq!(d, None);
        // 65 above every other fresh head: not believed, the runner-up is
        let (h, d) = t.publish(&[at(0, 13, 0), at(1, 13 + 65, 0)], now);
        assert_eq!(h.map(|h| h.number), Some(13));
        assert_eq!(d, Some(Distrusted { provider: ProviderId(1), head: 78, next: 13 }));
        // ...unless the runner-up is stale: then there is no witness against it
        let mut stale = at(0, 13, 0);
        stale.fresh = false;
        let (h, _) = t.publish(&[stale, at(1, 78, 0)], now);
        assert_eq!(h.map(|h| h.number), Some(78));
        assert_eq!(t.publish(&[], now).0, None);
    }

    #[test]
    fn a_split_at_the_top_follows_the_majority_and_a_tie_keeps_the_current_branch() {
        let mut t = tracker();
        let now = Instant::now();
        let (h, _) = t.publish(&[at(0, 20, 0), at(1, 20, 100), at(2, 20, 100)], now);
        assert_eq!(h.map(|h| h.hash), Some(at(1, 20, 100).hash));
        // one provider leaves branch B: 1:1, the current branch (B) stays
        let (h, _) = t.publish(&[at(0, 20, 0), at(1, 20, 100)], now);
        assert_eq!(h.map(|h| h.hash), Some(at(1, 20, 100).hash));
        // a stale witness does not vote
        let mut stale = at(2, 20, 0);
        stale.fresh = false;
        let (h, _) = t.publish(&[at(0, 20, 0), at(1, 20, 100), stale], now);
        assert_eq!(h.map(|h| h.hash), Some(at(1, 20, 100).hash));
    }

    #[test]
    fn confirm_fork_switch_waits_for_a_minority_branch_but_not_for_a_majority_or_a_longer_chain() {
        let mut t = tracker();
        let t0 = Instant::now();
        t.publish(&[at(0, 30, 0), at(1, 30, 0), at(2, 30, 0)], t0);
        // one provider moves to another branch at 31 (not a child of our 30): minority, wait
        let fork = at(2, 31, 100);
        let (h, _) = t.publish(&[at(0, 30, 0), at(1, 30, 0), fork], t0);
        assert_eq!(h.map(|h| (h.number, h.hash)), Some((30, at(0, 30, 0).hash)));
        let (h, _) = t.publish(&[at(0, 30, 0), at(1, 30, 0), fork], t0 + Duration::from_millis(900));
        assert_eq!(h.map(|h| h.number), Some(30), "not yet confirmed");
        // it stood for FORK_CONFIRM: believed
        let (h, _) = t.publish(&[at(0, 30, 0), at(1, 30, 0), fork], t0 + FORK_CONFIRM);
        assert_eq!(h.map(|h| h.hash), Some(fork.hash));

        // a majority moves at once
        let mut t = tracker();
        t.publish(&[at(0, 30, 0), at(1, 30, 0), at(2, 30, 0)], t0);
        let (h, _) = t.publish(&[at(0, 30, 0), at(1, 31, 100), at(2, 31, 100)], t0);
        assert_eq!(h.map(|h| h.hash), Some(at(1, 31, 100).hash));

        // a child of the current head, or a head two higher, is taken at once
        let mut t = tracker();
        t.publish(&[at(0, 30, 0), at(1, 30, 0)], t0);
        let (h, _) = t.publish(&[at(0, 31, 0), at(1, 30, 0)], t0);
        assert_eq!(h.map(|h| h.number), Some(31));
        let (h, _) = t.publish(&[at(0, 31, 0), at(1, 33, 100)], t0);
        assert_eq!(h.map(|h| h.number), Some(33));
    }

    #[test]
    fn heights_alone_are_followed_and_a_hash_outvotes_no_hash() {
        let mut t = tracker();
        let t0 = Instant::now();
        let bare = |p: u16, n: u64| HeadReport { hash: None, parent_hash: None, ..at(p, n, 0) };
        let (h, _) = t.publish(&[bare(0, 40), bare(1, 41)], t0);
        assert_eq!(h.map(|h| (h.number, h.hash)), Some((41, None)));
        let (h, _) = t.publish(&[bare(0, 42), at(1, 42, 100)], t0);
        assert_eq!(h.map(|h| h.hash), Some(at(1, 42, 100).hash), "the one hash at the top is the head's");
        // a new branch at the top reported by the only provider with hashes is taken at once:
        // bare heights abstain from the vote
        let (h, _) = t.publish(&[bare(0, 42), bare(2, 42), at(1, 42, 150)], t0);
        assert_eq!(h.map(|h| h.hash), Some(at(1, 42, 150).hash));
        // a far-ahead height is still not believed
        let (h, d) = t.publish(&[bare(0, 43), bare(1, 43 + 65)], t0);
        assert_eq!((h.map(|h| h.number), d.map(|d| d.head)), (Some(43), Some(108)));
    }

    fn bl(l: Option<Lag>) -> Option<(u64, bool)> {
        l.map(|l| (l.blocks, l.lagging))
    }

    #[test]
    fn a_steady_few_blocks_behind_is_lagging_after_the_grace_period() {
        let mut t = tracker();
        let t0 = Instant::now();
        let step = Duration::from_millis(200);
        let mut since = None;
        let mut lagging = false;
        // 200 ms blocks, the provider always 5 behind: each height reaches it only 0.2 s late
        for k in 0..=10u32 {
            let now = t0 + step * k;
            t.publish(&[at(0, 100 + u64::from(k), 0)], now);
            let l = t.lag(95 + u64::from(k), lagging, since, now).unwrap_or(Lag {
                blocks: 0,
                lagging: false,
                beyond_since: None,
            });
            (lagging, since) = (l.lagging, l.beyond_since);
            assert_eq!(l.lagging, step * k >= LAG_GRACE, "at {k}");
        }
    }

    #[test]
    fn lag_counts_after_a_grace_period_and_clears_when_caught_up() {
        let mut t = tracker();
        let t0 = Instant::now();
        assert_eq!(t.lag(5, false, None, t0), None, "no fleet head yet");
        for n in 10..=20 {
            t.publish(&[at(0, n, 0)], t0);
        }
        // 10 behind, but height 14 (the first beyond the limit for a head of 10) was only just
        // seen: a poll burst, not lagging yet
        assert_eq!(bl(t.lag(10, false, None, t0)), Some((10, false)));
        let later = t0 + LAG_GRACE;
        assert_eq!(bl(t.lag(10, false, None, later)), Some((10, true)));
        // once lagging, it stays so until within the limit
        assert_eq!(bl(t.lag(16, true, None, later)), Some((4, true)));
        assert_eq!(bl(t.lag(17, true, None, later)), Some((3, false)));
        assert!((t.lag_secs(10, later) - LAG_GRACE.as_secs_f64()).abs() < 1e-9);
        assert!(t.lag_secs(20, later).abs() < f64::EPSILON);
        // a report made when 20 was the head is judged against 20, however far the head rose since
        let much_later = later + Duration::from_secs(10);
        for n in 21..=30 {
            t.publish(&[at(0, n, 0)], much_later);
        }
        assert_eq!(bl(t.lag(20, false, None, later)), Some((0, false)));
        assert_eq!(bl(t.lag(20, false, None, much_later + LAG_GRACE)), Some((10, true)));
    }
}
