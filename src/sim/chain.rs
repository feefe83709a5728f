//! A simulated chain: real header hashes, random transactions, a block clock, short reorgs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::B256;

use super::block::{self, SimBlock, Spec};

/// Knobs for the simulated chain.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub chain_id: u64,
    pub block_time: Duration,
    /// Transactions per block: uniform in `min..=max`.
    pub txs_min: u32,
    pub txs_max: u32,
    /// Chance per new block that the chain reorganises instead of just growing.
    pub reorg_probability: f64,
    /// Reorg depth is uniform in `1..=reorg_max_depth`.
    pub reorg_max_depth: u64,
    /// Blocks mined before serving starts.
    pub prefill: u64,
    pub seed: u64,
    /// Keep only the newest this many blocks in memory (older heights answer null, like a
    /// pruned node); `None` keeps every block (tests that read history).
    pub keep_blocks: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            chain_id: 31_337,
            block_time: Duration::from_secs(1),
            txs_min: 5,
            txs_max: 20,
            reorg_probability: 0.02,
            reorg_max_depth: 3,
            prefill: 100,
            seed: 1,
            keep_blocks: None,
        }
    }
}

#[derive(Debug, Clone)]
struct State {
    /// The canonical chain from height `base` up.
    canonical: std::collections::VecDeque<Arc<SimBlock>>,
    base: u64,
    by_hash: HashMap<B256, Arc<SimBlock>>,
    /// Transaction hash → the block that holds it.
    by_tx: HashMap<B256, B256>,
    rng: fastrand::Rng,
    reorgs: u64,
    /// Distinguishes re-mined blocks at the same height.
    salt: u64,
}

/// The chain shared by all simulated providers.
#[derive(Debug)]
pub struct SimChain {
    opts: SimOptions,
    state: RwLock<State>,
    /// Bumped on every change of the chain (a block mined, a reorg): `newHeads` waits on it.
    changes: tokio::sync::watch::Sender<u64>,
}

impl SimChain {
    /// A chain with genesis plus `opts.prefill` blocks.
    pub fn new(opts: SimOptions) -> Arc<Self> {
        let mut st = State {
            canonical: std::collections::VecDeque::new(),
            base: 0,
            by_hash: HashMap::new(),
            by_tx: HashMap::new(),
            rng: fastrand::Rng::with_seed(opts.seed),
            reorgs: 0,
            salt: 0,
        };
        let genesis_ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(opts.prefill.saturating_mul(opts.block_time.as_secs().max(1)));
        let g = Arc::new(make_block(&mut st, &opts, 0, B256::ZERO, genesis_ts));
        st.by_hash.insert(g.hash, g.clone());
        st.canonical.push_back(g);
        for _ in 0..opts.prefill {
            extend(&mut st, &opts);
        }
        Arc::new(Self { opts, state: RwLock::new(st), changes: tokio::sync::watch::channel(0).0 })
    }

    /// Wakes on every change of the chain.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        match self.state.read() {
            Ok(g) => f(&g),
            Err(p) => f(&p.into_inner()),
        }
    }

    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.write() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// An independent copy sharing this chain's history so far: a second branch for tests
    /// where providers disagree. Its next blocks get a different salt, so it diverges.
    pub fn fork(&self) -> Arc<Self> {
        let mut st = self.read(Clone::clone);
        st.salt = st.salt.wrapping_add(1_000_003);
        st.rng = fastrand::Rng::with_seed(self.opts.seed.wrapping_add(0x5eed));
        Arc::new(Self { opts: self.opts.clone(), state: RwLock::new(st), changes: tokio::sync::watch::channel(0).0 })
    }

    /// Chain id served by `eth_chainId`.
    pub fn chain_id(&self) -> u64 {
        self.opts.chain_id
    }

    /// Block time of the clock.
    pub fn block_time(&self) -> Duration {
        self.opts.block_time
    }

    /// Current head height.
    pub fn head_number(&self) -> u64 {
        self.read(State::head)
    }

    /// Canonical block at `number` (None above the head, or below the kept window).
    pub fn block(&self, number: u64) -> Option<Arc<SimBlock>> {
        self.read(|s| {
            let i = number.checked_sub(s.base)?;
            usize::try_from(i).ok().and_then(|i| s.canonical.get(i).cloned())
        })
    }

    /// Blocks held in memory (canonical and replaced).
    pub fn blocks_held(&self) -> usize {
        self.read(|s| s.by_hash.len())
    }

    /// Any block ever produced (canonical or not) by hash.
    pub fn block_by_hash(&self, hash: &B256) -> Option<Arc<SimBlock>> {
        self.read(|s| s.by_hash.get(hash).cloned())
    }

    /// The canonical block holding transaction `hash`, if any.
    pub fn block_of_tx(&self, hash: &B256) -> Option<Arc<SimBlock>> {
        self.read(|s| {
            let b = s.by_hash.get(s.by_tx.get(hash)?)?;
            let i = usize::try_from(b.number.checked_sub(s.base)?).ok()?;
            s.canonical.get(i).filter(|c| c.hash == b.hash).cloned()
        })
    }

    /// Reorgs performed so far.
    pub fn reorgs(&self) -> u64 {
        self.read(|s| s.reorgs)
    }

    /// Mine one block, or (with the configured chance) reorganise. Returns the new head.
    pub fn tick(&self) -> u64 {
        let opts = &self.opts;
        let head = self.write(|s| {
            let roll = s.rng.f64();
            if roll < opts.reorg_probability && s.canonical.len() as u64 > opts.reorg_max_depth + 1 {
                let depth = s.rng.u64(1..=opts.reorg_max_depth.max(1));
                reorg(s, opts, depth);
            } else {
                extend(s, opts);
            }
            s.prune(opts.keep_blocks);
            s.head()
        });
        self.changed();
        head
    }

    /// Replace the newest `depth` blocks with `depth + 1` new ones (test hook).
    pub fn reorg(&self, depth: u64) {
        let opts = &self.opts;
        self.write(|s| reorg(s, opts, depth));
        self.changed();
    }
}

impl State {
    fn head(&self) -> u64 {
        self.base + self.canonical.len() as u64 - 1
    }

    /// Forget blocks below the newest `keep` (canonical ones and replaced ones alike).
    fn prune(&mut self, keep: Option<usize>) {
        let Some(keep) = keep.map(|k| k.max(2)) else { return };
        while self.canonical.len() > keep {
            if self.canonical.pop_front().is_some() {
                self.base += 1;
            }
        }
        // Replaced blocks are few; sweep them in batches rather than on every block.
        if self.by_hash.len() > keep + keep / 8 + 16 {
            let base = self.base;
            self.by_hash.retain(|_, b| b.number >= base);
            let blocks = &self.by_hash;
            self.by_tx.retain(|_, h| blocks.contains_key(h));
        }
    }
}

fn reorg(s: &mut State, opts: &SimOptions, depth: u64) {
    let keep = (s.canonical.len() as u64).saturating_sub(depth).max(1);
    s.canonical.truncate(usize::try_from(keep).unwrap_or(1));
    s.reorgs += 1;
    for _ in 0..=depth {
        extend(s, opts);
    }
}

fn extend(s: &mut State, opts: &SimOptions) {
    let Some(parent) = s.canonical.back().cloned() else {
        return;
    };
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let b = Arc::new(make_block(s, opts, parent.number + 1, parent.hash, ts));
    s.by_hash.insert(b.hash, b.clone());
    for t in b.tx_hashes() {
        s.by_tx.insert(*t, b.hash);
    }
    s.canonical.push_back(b);
}

fn make_block(s: &mut State, opts: &SimOptions, number: u64, parent_hash: B256, timestamp: u64) -> SimBlock {
    s.salt += 1;
    block::make_block(&mut Spec {
        rng: &mut s.rng,
        salt: s.salt,
        number,
        parent_hash,
        timestamp,
        txs_min: opts.txs_min,
        txs_max: opts.txs_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_chain_keeps_a_window_of_blocks() {
        let chain = SimChain::new(SimOptions {
            prefill: 10,
            keep_blocks: Some(64),
            reorg_probability: 0.2,
            txs_min: 0,
            txs_max: 1,
            ..SimOptions::default()
        });
        for _ in 0..2_000 {
            chain.tick();
        }
        let head = chain.head_number();
        assert!(head >= 2_000, "{head}");
        assert!(chain.blocks_held() <= 64 + 64 / 8 + 16 + 8, "{} blocks held", chain.blocks_held());
        assert!(chain.block(head).is_some() && chain.block(head - 63).is_some());
        assert!(chain.block(head - 64).is_none() && chain.block(0).is_none(), "pruned like a pruned node");
        let tip = chain.block(head).map(|b| b.hash).unwrap_or_default();
        assert!(chain.block_by_hash(&tip).is_some());
        // unbounded (the default): every block stays
        let all = SimChain::new(SimOptions { prefill: 10, txs_min: 0, txs_max: 0, ..SimOptions::default() });
        for _ in 0..500 {
            all.tick();
        }
        assert!(all.block(0).is_some());
    }
}
