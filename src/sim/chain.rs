//! A simulated chain: real header hashes, random transactions, a block clock, short reorgs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_primitives::{Address, B256, Bytes, U256, hex, keccak256};
use serde_json::value::RawValue;

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

/// One block, pre-serialised both ways so serving it costs a copy.
#[derive(Debug)]
pub struct SimBlock {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub tx_count: usize,
    full: Box<RawValue>,
    light: Box<RawValue>,
}

impl SimBlock {
    /// The JSON-RPC result for `eth_getBlockBy*` with or without full transactions.
    pub fn json(&self, full: bool) -> Box<RawValue> {
        if full { self.full.clone() } else { self.light.clone() }
    }
}

#[derive(Debug, Clone)]
struct State {
    /// The canonical chain from height `base` up.
    canonical: std::collections::VecDeque<Arc<SimBlock>>,
    base: u64,
    by_hash: HashMap<B256, Arc<SimBlock>>,
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
}

impl SimChain {
    /// A chain with genesis plus `opts.prefill` blocks.
    pub fn new(opts: SimOptions) -> Arc<Self> {
        let mut st = State {
            canonical: std::collections::VecDeque::new(),
            base: 0,
            by_hash: HashMap::new(),
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
        Arc::new(Self { opts, state: RwLock::new(st) })
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
        Arc::new(Self { opts: self.opts.clone(), state: RwLock::new(st) })
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

    /// Reorgs performed so far.
    pub fn reorgs(&self) -> u64 {
        self.read(|s| s.reorgs)
    }

    /// Mine one block, or (with the configured chance) reorganise. Returns the new head.
    pub fn tick(&self) -> u64 {
        let opts = &self.opts;
        self.write(|s| {
            let roll = s.rng.f64();
            if roll < opts.reorg_probability && s.canonical.len() as u64 > opts.reorg_max_depth + 1 {
                let depth = s.rng.u64(1..=opts.reorg_max_depth.max(1));
                reorg(s, opts, depth);
            } else {
                extend(s, opts);
            }
            s.prune(opts.keep_blocks);
            s.head()
        })
    }

    /// Replace the newest `depth` blocks with `depth + 1` new ones (test hook).
    pub fn reorg(&self, depth: u64) {
        let opts = &self.opts;
        self.write(|s| reorg(s, opts, depth));
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
    s.canonical.push_back(b);
}

fn rand_b256(rng: &mut fastrand::Rng) -> B256 {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    B256::from(b)
}

fn rand_addr(rng: &mut fastrand::Rng) -> Address {
    let mut b = [0u8; 20];
    rng.fill(&mut b);
    Address::from(b)
}

fn q(v: u64) -> String {
    format!("{v:#x}")
}

fn make_block(s: &mut State, opts: &SimOptions, number: u64, parent_hash: B256, timestamp: u64) -> SimBlock {
    s.salt += 1;
    let rng = &mut s.rng;
    let n_tx = if number == 0 { 0 } else { rng.u32(opts.txs_min..=opts.txs_max.max(opts.txs_min)) };
    struct Tx {
        hash: B256,
        from: Address,
        to: Option<Address>,
        value: U256,
        nonce: u64,
        input: Vec<u8>,
        kind: u8,
    }
    let mut txs = Vec::with_capacity(n_tx as usize);
    for i in 0..n_tx {
        let mut input = vec![0u8; rng.usize(0..68)];
        rng.fill(&mut input);
        let mut seed = Vec::with_capacity(48);
        seed.extend_from_slice(&number.to_be_bytes());
        seed.extend_from_slice(&u64::from(i).to_be_bytes());
        seed.extend_from_slice(&s.salt.to_be_bytes());
        seed.extend_from_slice(rand_b256(rng).as_slice());
        txs.push(Tx {
            hash: keccak256(&seed),
            from: rand_addr(rng),
            to: if rng.u8(..) < 16 { None } else { Some(rand_addr(rng)) },
            value: U256::from(rng.u64(..)) * U256::from(rng.u32(1..=1000)),
            nonce: rng.u64(0..10_000),
            input,
            kind: if rng.bool() { 2 } else { 0 },
        });
    }
    let mut roots = Vec::with_capacity(txs.len() * 32);
    for t in &txs {
        roots.extend_from_slice(t.hash.as_slice());
    }
    let gas_used = 21_000 * u64::from(n_tx);
    let header = Header {
        parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: rand_addr(rng),
        state_root: rand_b256(rng),
        transactions_root: keccak256(&roots),
        receipts_root: rand_b256(rng),
        difficulty: U256::ZERO,
        number,
        gas_limit: 30_000_000,
        gas_used,
        timestamp,
        extra_data: Bytes::from(s.salt.to_be_bytes().to_vec()),
        mix_hash: rand_b256(rng),
        base_fee_per_gas: Some(1_000_000_000),
        ..Default::default()
    };
    let hash = header.hash_slow();
    let tx_json: Vec<String> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let to = t.to.map_or("null".to_string(), |a| format!("\"{a:#x}\""));
            let fees = if t.kind == 2 {
                format!(",\"maxFeePerGas\":\"{}\",\"maxPriorityFeePerGas\":\"{}\"", q(2_000_000_000), q(1_000_000))
            } else {
                String::new()
            };
            format!(
                "{{\"hash\":\"{:#x}\",\"blockHash\":\"{hash:#x}\",\"blockNumber\":\"{}\",\"transactionIndex\":\"{}\",\
                 \"from\":\"{:#x}\",\"to\":{to},\"value\":\"{:#x}\",\"nonce\":\"{}\",\"gas\":\"0x5208\",\
                 \"gasPrice\":\"{}\",\"input\":\"0x{}\",\"type\":\"{}\"{fees}}}",
                t.hash,
                q(number),
                q(i as u64),
                t.from,
                t.value,
                q(t.nonce),
                q(1_500_000_000),
                hex::encode(&t.input),
                q(u64::from(t.kind)),
            )
        })
        .collect();
    let tx_hashes: Vec<String> = txs.iter().map(|t| format!("\"{:#x}\"", t.hash)).collect();
    let head = format!(
        "\"number\":\"{}\",\"hash\":\"{hash:#x}\",\"parentHash\":\"{parent_hash:#x}\",\"sha3Uncles\":\"{:#x}\",\
         \"miner\":\"{:#x}\",\"stateRoot\":\"{:#x}\",\"transactionsRoot\":\"{:#x}\",\"receiptsRoot\":\"{:#x}\",\
         \"logsBloom\":\"0x{}\",\"difficulty\":\"0x0\",\"gasLimit\":\"{}\",\"gasUsed\":\"{}\",\"timestamp\":\"{}\",\
         \"extraData\":\"0x{}\",\"mixHash\":\"{:#x}\",\"nonce\":\"0x0000000000000000\",\"baseFeePerGas\":\"{}\",\
         \"size\":\"{}\",\"uncles\":[]",
        q(number),
        header.ommers_hash,
        header.beneficiary,
        header.state_root,
        header.transactions_root,
        header.receipts_root,
        "0".repeat(512),
        q(header.gas_limit),
        q(gas_used),
        q(timestamp),
        hex::encode(&header.extra_data),
        header.mix_hash,
        q(1_000_000_000),
        q(600 + 120 * u64::from(n_tx)),
    );
    let full = format!("{{{head},\"transactions\":[{}]}}", tx_json.join(","));
    let light = format!("{{{head},\"transactions\":[{}]}}", tx_hashes.join(","));
    SimBlock {
        number,
        hash,
        parent_hash,
        tx_count: txs.len(),
        // The strings above are built from hex and integers only: always valid JSON.
        full: RawValue::from_string(full).unwrap_or_else(|_| null()),
        light: RawValue::from_string(light).unwrap_or_else(|_| null()),
    }
}

fn null() -> Box<RawValue> {
    Box::<RawValue>::default()
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
