//! The recent canonical chain kept in memory: what parent links and reorg walks compare against.

use std::collections::VecDeque;

use alloy_primitives::B256;

use crate::model::ChainLink;

/// The last `cap` canonical (number, hash) pairs, contiguous, oldest first.
#[derive(Debug, Clone)]
pub struct Window {
    links: VecDeque<ChainLink>,
    cap: usize,
    /// True when nothing is stored just below the oldest link, so a branch may reach below it
    /// (an empty store, the start of a backfill segment, or a hole).
    floor_open: bool,
    /// Where to start when the window is empty.
    start: u64,
}

impl Window {
    /// Seed from stored links (oldest first). Only the contiguous run ending at the newest is
    /// kept. `below_is_stored` says whether the block just below the oldest given link exists.
    pub fn seed(links: Vec<ChainLink>, cap: usize, below_is_stored: bool, start: u64) -> Self {
        let cap = cap.max(2);
        let mut run: VecDeque<ChainLink> = VecDeque::new();
        let mut cut_by_hole = false;
        for l in links.into_iter().rev() {
            match run.front() {
                Some(f) if f.number != l.number + 1 => {
                    cut_by_hole = true;
                    break;
                }
                _ => run.push_front(l),
            }
        }
        while run.len() > cap {
            run.pop_front();
        }
        let floor_open = run.is_empty() || cut_by_hole || (!below_is_stored && run.len() < cap);
        Self { links: run, cap, floor_open, start }
    }

    /// The newest link.
    pub fn tip(&self) -> Option<ChainLink> {
        self.links.back().copied()
    }

    /// The next height to fetch.
    pub fn next_number(&self) -> u64 {
        self.tip().map_or(self.start, |t| t.number + 1)
    }

    /// The oldest height held.
    pub fn floor(&self) -> Option<u64> {
        self.links.front().map(|l| l.number)
    }

    /// True when a branch may be anchored below the floor.
    pub fn floor_open(&self) -> bool {
        self.floor_open
    }

    /// Hash held at `number`, if within the window.
    pub fn hash_at(&self, number: u64) -> Option<B256> {
        let floor = self.floor()?;
        let k = usize::try_from(number.checked_sub(floor)?).ok()?;
        self.links.get(k).map(|l| l.hash)
    }

    /// True when a block with this number and parent extends the tip (or starts an empty window).
    pub fn extends(&self, number: u64, parent: B256) -> bool {
        match self.tip() {
            Some(t) => t.number + 1 == number && t.hash == parent,
            None => true,
        }
    }

    /// Append a link that extends the tip.
    pub fn push(&mut self, link: ChainLink) {
        self.links.push_back(link);
        if self.links.len() > self.cap {
            self.links.pop_front();
            self.floor_open = false;
        }
    }

    /// Drop links above `number` (after a reorg, or to undo a failed commit).
    pub fn truncate_above(&mut self, number: u64) {
        while self.tip().is_some_and(|t| t.number > number) {
            self.links.pop_back();
        }
        if self.links.is_empty() {
            self.start = number.saturating_add(1);
        }
    }

    /// Number of links held.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when no link is held.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(n: u64) -> ChainLink {
        ChainLink { number: n, hash: B256::with_last_byte(u8::try_from(n % 256).unwrap_or(0)) }
    }

    #[test]
    fn seed_keeps_the_contiguous_suffix() {
        let w = Window::seed(vec![l(1), l(2), l(5), l(6)], 10, true, 0);
        assert_eq!(w.floor(), Some(5));
        assert!(w.floor_open());
        assert_eq!(w.next_number(), 7);
        let w = Window::seed(vec![l(3), l(4)], 2, true, 0);
        assert!(!w.floor_open());
        let w = Window::seed(vec![], 10, false, 42);
        assert_eq!(w.next_number(), 42);
        assert!(w.extends(42, B256::ZERO));
    }

    #[test]
    fn push_and_truncate() {
        let mut w = Window::seed(vec![l(1)], 3, false, 0);
        for n in 2..=5 {
            w.push(l(n));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.floor(), Some(3));
        assert_eq!(w.hash_at(4), Some(l(4).hash));
        assert_eq!(w.hash_at(2), None);
        w.truncate_above(3);
        assert_eq!(w.tip(), Some(l(3)));
        assert!(w.extends(4, l(3).hash));
    }
}
