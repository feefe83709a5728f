//! One simulated block: random transactions, their receipts and logs (ERC-20-like transfers
//! and approvals from a few token contracts, some reverted transactions), a real header hash,
//! receipts root and logs bloom, and the JSON answers pre-serialised, so serving one costs a copy.

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_primitives::{Address, B256, Bloom, Bytes, LogData, U256, hex, keccak256};
use serde_json::value::RawValue;

use crate::model::{Log, Receipt};
use crate::provider::receipts::receipts_root;

/// How many token contracts emit the simulated logs.
pub const TOKENS: u8 = 3;

/// The address of simulated token contract `i` (stable across runs).
pub fn token(i: u8) -> Address {
    Address::from_slice(&keccak256([b't', b'o', b'k', b'e', b'n', i]).as_slice()[12..])
}

/// `Transfer(address,address,uint256)` and `Approval(address,address,uint256)` topics.
pub fn transfer_topic() -> B256 {
    keccak256("Transfer(address,address,uint256)")
}

pub fn approval_topic() -> B256 {
    keccak256("Approval(address,address,uint256)")
}

/// One block, pre-serialised both ways and with its receipts.
#[derive(Debug)]
pub struct SimBlock {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub tx_count: usize,
    /// Every log of the block (for `eth_getLogs`), with its JSON.
    pub logs: Vec<SimLog>,
    full: Box<RawValue>,
    light: Box<RawValue>,
    receipts: Box<RawValue>,
    /// Each transaction's hash and receipt JSON.
    tx_receipts: Vec<(B256, Box<RawValue>)>,
}

/// One log as served.
#[derive(Debug)]
pub struct SimLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub json: Box<RawValue>,
}

impl SimBlock {
    /// The JSON-RPC result for `eth_getBlockBy*` with or without full transactions.
    pub fn json(&self, full: bool) -> Box<RawValue> {
        if full { self.full.clone() } else { self.light.clone() }
    }

    /// The result of `eth_getBlockReceipts`.
    pub fn receipts_json(&self) -> Box<RawValue> {
        self.receipts.clone()
    }

    /// The receipt of transaction `hash`, if it is in this block.
    pub fn receipt_json(&self, hash: &B256) -> Option<Box<RawValue>> {
        self.tx_receipts.iter().find(|(h, _)| h == hash).map(|(_, r)| r.clone())
    }

    /// The block's transaction hashes.
    pub fn tx_hashes(&self) -> impl Iterator<Item = &B256> {
        self.tx_receipts.iter().map(|(h, _)| h)
    }
}

/// What the chain hands the builder.
#[derive(Debug)]
pub(super) struct Spec<'a> {
    pub(super) rng: &'a mut fastrand::Rng,
    pub(super) salt: u64,
    pub(super) number: u64,
    pub(super) parent_hash: B256,
    pub(super) timestamp: u64,
    pub(super) txs_min: u32,
    pub(super) txs_max: u32,
}

struct Tx {
    hash: B256,
    from: Address,
    to: Option<Address>,
    value: U256,
    nonce: u64,
    input: Vec<u8>,
    kind: u8,
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

fn word(a: Address) -> B256 {
    B256::left_padding_from(a.as_slice())
}

fn random_tx(s: &mut Spec<'_>, i: u32) -> Tx {
    let rng = &mut *s.rng;
    let mut input = vec![0u8; rng.usize(0..68)];
    rng.fill(&mut input);
    let mut seed = Vec::with_capacity(48);
    seed.extend_from_slice(&s.number.to_be_bytes());
    seed.extend_from_slice(&u64::from(i).to_be_bytes());
    seed.extend_from_slice(&s.salt.to_be_bytes());
    seed.extend_from_slice(rand_b256(rng).as_slice());
    // Most calls go to a token contract (they emit the logs); some create a contract.
    let to = match rng.u8(..) {
        0..16 => None,
        16..176 => Some(token(rng.u8(0..TOKENS))),
        _ => Some(rand_addr(rng)),
    };
    Tx {
        hash: keccak256(&seed),
        from: rand_addr(rng),
        to,
        value: U256::from(rng.u64(..)) * U256::from(rng.u32(1..=1000)),
        nonce: rng.u64(0..10_000),
        input,
        kind: if rng.bool() { 2 } else { 0 },
    }
}

/// The receipt of `tx` at position `i`: a token call emits 1–3 transfers or approvals (a few
/// revert with none); `cumulative` and `next_log` carry the block's running totals.
fn receipt_of(rng: &mut fastrand::Rng, tx: &Tx, i: u32, cumulative: &mut u64, next_log: &mut u32) -> Receipt {
    let reverted = rng.u8(..) < 8;
    let mut logs = Vec::new();
    if let Some(to) = tx.to.filter(|t| (0..TOKENS).any(|k| token(k) == *t))
        && !reverted
    {
        for _ in 0..rng.u32(1..=3) {
            let topic0 = if rng.u8(..) < 200 { transfer_topic() } else { approval_topic() };
            let topics = vec![topic0, word(tx.from), word(rand_addr(rng))];
            let value = U256::from(rng.u64(..)).to_be_bytes::<32>();
            let data = LogData::new_unchecked(topics, Bytes::copy_from_slice(&value));
            logs.push(Log {
                log_index: *next_log,
                tx_index: i,
                tx_hash: tx.hash,
                inner: alloy_primitives::Log { address: to, data },
            });
            *next_log += 1;
        }
    }
    let gas_used = 21_000 + 12_000 * logs.len() as u64;
    *cumulative += gas_used;
    let mut logs_bloom = Bloom::ZERO;
    for l in &logs {
        logs_bloom.accrue_log(&l.inner);
    }
    let contract_address = tx.to.is_none().then(|| Address::from_slice(&keccak256(tx.hash).as_slice()[12..]));
    Receipt {
        tx_index: i,
        tx_hash: tx.hash,
        tx_type: tx.kind,
        status: Some(!reverted),
        post_state: None,
        gas_used,
        cumulative_gas_used: *cumulative,
        effective_gas_price: Some(U256::from(if tx.kind == 2 { 1_001_000_000u64 } else { 1_500_000_000 })),
        contract_address,
        blob_gas_used: None,
        blob_gas_price: None,
        logs_bloom,
        log_count: u32::try_from(logs.len()).unwrap_or(u32::MAX),
        logs,
    }
}

/// Build a block from `s`.
pub(super) fn make_block(s: &mut Spec<'_>) -> SimBlock {
    let n_tx = if s.number == 0 { 0 } else { s.rng.u32(s.txs_min..=s.txs_max.max(s.txs_min)) };
    let txs: Vec<Tx> = (0..n_tx).map(|i| random_tx(s, i)).collect();
    let (mut cumulative, mut next_log) = (0u64, 0u32);
    let receipts: Vec<Receipt> =
        txs.iter().zip(0u32..).map(|(t, i)| receipt_of(s.rng, t, i, &mut cumulative, &mut next_log)).collect();
    let mut logs_bloom = Bloom::ZERO;
    for r in &receipts {
        logs_bloom.accrue_bloom(&r.logs_bloom);
    }
    let mut roots = Vec::with_capacity(txs.len() * 32);
    for t in &txs {
        roots.extend_from_slice(t.hash.as_slice());
    }
    let rng = &mut *s.rng;
    let header = Header {
        parent_hash: s.parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: rand_addr(rng),
        state_root: rand_b256(rng),
        transactions_root: keccak256(&roots),
        receipts_root: receipts_root(&receipts),
        logs_bloom,
        difficulty: U256::ZERO,
        number: s.number,
        gas_limit: 30_000_000,
        gas_used: cumulative,
        timestamp: s.timestamp,
        extra_data: Bytes::from(s.salt.to_be_bytes().to_vec()),
        mix_hash: rand_b256(rng),
        base_fee_per_gas: Some(1_000_000_000),
        ..Default::default()
    };
    let hash = header.hash_slow();
    serialise(&header, hash, &txs, &receipts)
}

fn tx_json(t: &Tx, i: u64, number: u64, hash: B256) -> String {
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
        q(i),
        t.from,
        t.value,
        q(t.nonce),
        q(1_500_000_000),
        hex::encode(&t.input),
        q(u64::from(t.kind)),
    )
}

fn log_json(l: &Log, r: &Receipt, number: u64, hash: B256) -> String {
    let topics: Vec<String> = l.inner.data.topics().iter().map(|t| format!("\"{t:#x}\"")).collect();
    format!(
        "{{\"address\":\"{:#x}\",\"topics\":[{}],\"data\":\"0x{}\",\"blockNumber\":\"{}\",\"transactionHash\":\"{:#x}\",\
         \"transactionIndex\":\"{}\",\"blockHash\":\"{hash:#x}\",\"logIndex\":\"{}\",\"removed\":false}}",
        l.inner.address,
        topics.join(","),
        hex::encode(&l.inner.data.data),
        q(number),
        r.tx_hash,
        q(u64::from(r.tx_index)),
        q(u64::from(l.log_index)),
    )
}

fn receipt_json(r: &Receipt, t: &Tx, number: u64, hash: B256, logs: &[String]) -> String {
    let to = t.to.map_or("null".to_string(), |a| format!("\"{a:#x}\""));
    let created = r.contract_address.map_or("null".to_string(), |a| format!("\"{a:#x}\""));
    format!(
        "{{\"transactionHash\":\"{:#x}\",\"transactionIndex\":\"{}\",\"blockHash\":\"{hash:#x}\",\"blockNumber\":\"{}\",\
         \"from\":\"{:#x}\",\"to\":{to},\"cumulativeGasUsed\":\"{}\",\"gasUsed\":\"{}\",\"contractAddress\":{created},\
         \"logs\":[{}],\"logsBloom\":\"0x{}\",\"type\":\"{}\",\"status\":\"{}\",\"effectiveGasPrice\":\"{}\"}}",
        r.tx_hash,
        q(u64::from(r.tx_index)),
        q(number),
        t.from,
        q(r.cumulative_gas_used),
        q(r.gas_used),
        logs.join(","),
        hex::encode(r.logs_bloom.as_slice()),
        q(u64::from(r.tx_type)),
        q(u64::from(r.status == Some(true))),
        r.effective_gas_price.map_or_else(String::new, |p| format!("{p:#x}")),
    )
}

fn raw(s: String) -> Box<RawValue> {
    // Built from hex and integers only: always valid JSON.
    RawValue::from_string(s).unwrap_or_else(|_| Box::<RawValue>::default())
}

fn serialise(header: &Header, hash: B256, txs: &[Tx], receipts: &[Receipt]) -> SimBlock {
    let number = header.number;
    let tx_json: Vec<String> = txs.iter().enumerate().map(|(i, t)| tx_json(t, i as u64, number, hash)).collect();
    let tx_hashes: Vec<String> = txs.iter().map(|t| format!("\"{:#x}\"", t.hash)).collect();
    let head = format!(
        "\"number\":\"{}\",\"hash\":\"{hash:#x}\",\"parentHash\":\"{:#x}\",\"sha3Uncles\":\"{:#x}\",\
         \"miner\":\"{:#x}\",\"stateRoot\":\"{:#x}\",\"transactionsRoot\":\"{:#x}\",\"receiptsRoot\":\"{:#x}\",\
         \"logsBloom\":\"0x{}\",\"difficulty\":\"0x0\",\"gasLimit\":\"{}\",\"gasUsed\":\"{}\",\"timestamp\":\"{}\",\
         \"extraData\":\"0x{}\",\"mixHash\":\"{:#x}\",\"nonce\":\"0x0000000000000000\",\"baseFeePerGas\":\"{}\",\
         \"size\":\"{}\",\"uncles\":[]",
        q(number),
        header.parent_hash,
        header.ommers_hash,
        header.beneficiary,
        header.state_root,
        header.transactions_root,
        header.receipts_root,
        hex::encode(header.logs_bloom.as_slice()),
        q(header.gas_limit),
        q(header.gas_used),
        q(header.timestamp),
        hex::encode(&header.extra_data),
        header.mix_hash,
        q(1_000_000_000),
        q(600 + 120 * txs.len() as u64),
    );
    let mut logs = Vec::new();
    let mut receipt_texts = Vec::with_capacity(receipts.len());
    let mut tx_receipts = Vec::with_capacity(receipts.len());
    for (r, t) in receipts.iter().zip(txs) {
        let texts: Vec<String> = r.logs.iter().map(|l| log_json(l, r, number, hash)).collect();
        for (l, text) in r.logs.iter().zip(&texts) {
            let topics = l.inner.data.topics().to_vec();
            logs.push(SimLog { address: l.inner.address, topics, json: raw(text.clone()) });
        }
        let text = receipt_json(r, t, number, hash, &texts);
        tx_receipts.push((r.tx_hash, raw(text.clone())));
        receipt_texts.push(text);
    }
    SimBlock {
        number,
        hash,
        parent_hash: header.parent_hash,
        tx_count: txs.len(),
        logs,
        full: raw(format!("{{{head},\"transactions\":[{}]}}", tx_json.join(","))),
        light: raw(format!("{{{head},\"transactions\":[{}]}}", tx_hashes.join(","))),
        receipts: raw(format!("[{}]", receipt_texts.join(","))),
        tx_receipts,
    }
}
