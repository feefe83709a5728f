//! The plain-SQLite ceiling for the rows a backfill of full blocks writes (issue 14): a minimal
//! rusqlite program inserting the simulated chain's blocks and transactions into a file made by
//! blockstreamer's own migrations (hash indexes dropped, as during a bulk load), with prepared
//! statements in large transactions and nothing else: no fetching, no decoding, no checks, no
//! pipeline. The values are decoded up front and not timed.
//!
//! With `--recording FILE` (a chain recorded by `examples/recorded.rs`) the rows are that chain's
//! blocks, transactions, receipts and logs (issue 13's shape): the floor under a backfill with
//! receipts and logs, on this machine, in SQLite. Either way the hash indexes the load dropped are rebuilt afterwards and timed apart, so the
//! file ends as a bulk load leaves it.
//!
//! `cargo run --release --example sqlite_ceiling -- --blocks 20000 --txs 20`
//! `cargo run --release --example sqlite_ceiling -- --recording chain.jsonl`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use blockstreamer::model::{Block, ProviderId};
use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
use blockstreamer::sim::{SimChain, SimOptions};
use blockstreamer::store::{Store, StoreOptions};
use clap::Parser;
use rusqlite::types::Value;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long, default_value_t = 20_000)]
    blocks: u64,
    #[arg(long, default_value_t = 20)]
    txs: u32,
    /// Blocks per transaction.
    #[arg(long, default_value_t = 1000)]
    commit_blocks: usize,
    #[arg(long, default_value = "/tmp/bs-sqlite-ceiling.db")]
    db: PathBuf,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Take the blocks and their receipts from this recording instead of the simulated chain.
    #[arg(long)]
    recording: Option<PathBuf>,
}

/// One block's rows: the block, its transactions, receipts and logs (block id left out).
struct Rows {
    block: Vec<Value>,
    txs: Vec<Vec<Value>>,
    receipts: Vec<Vec<Value>>,
    logs: Vec<Vec<Value>>,
}

fn int(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

fn wei(v: Option<U256>) -> Value {
    match v {
        None => Value::Null,
        Some(x) => i64::try_from(x).map_or_else(|_| Value::Text(x.to_string()), Value::Integer),
    }
}

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

/// Each block's row and its transactions' rows, in the columns blockstreamer writes.
fn rows(b: &Block) -> Rows {
    let block = vec![
        blob(b.hash.as_slice()),
        int(b.number),
        blob(b.parent_hash.as_slice()),
        int(b.timestamp),
        blob(b.miner.as_slice()),
        int(b.gas_used),
        int(b.gas_limit),
        wei(b.base_fee_per_gas),
        blob(b.state_root.as_slice()),
        blob(b.transactions_root.as_slice()),
        blob(b.receipts_root.as_slice()),
        b.size.map_or(Value::Null, int),
        Value::Integer(i64::from(b.tx_count)),
        Value::Integer(1),
        Value::Integer(1),
        Value::Integer(1),
        Value::Integer(0),
        b.logs_bloom.as_ref().map_or(Value::Null, |l| blob(l.as_slice())),
        Value::Integer(i64::from(b.receipts.is_some())),
        b.receipts.as_ref().map_or(Value::Null, |_| Value::Integer(1)),
        Value::Null,
    ];
    let txs = b
        .transactions
        .iter()
        .map(|t| {
            vec![
                Value::Null, // block id, set at insert
                Value::Integer(i64::from(t.index)),
                blob(t.hash.as_slice()),
                blob(t.from.as_slice()),
                t.to.map_or(Value::Null, |a| blob(a.as_slice())),
                wei(Some(t.value)),
                int(t.nonce),
                int(t.gas),
                wei(t.gas_price),
                wei(t.max_fee_per_gas),
                wei(t.max_priority_fee_per_gas),
                blob(t.input.as_ref()),
                Value::Integer(i64::from(t.tx_type)),
            ]
        })
        .collect();
    let all = b.receipts.iter().flat_map(|r| r.receipts.iter());
    let receipts = all
        .clone()
        .map(|r| {
            vec![
                Value::Integer(i64::from(r.tx_index)),
                blob(r.tx_hash.as_slice()),
                r.status.map_or(Value::Null, |s| Value::Integer(i64::from(s))),
                r.post_state.map_or(Value::Null, |p| blob(p.as_slice())),
                Value::Integer(i64::from(r.tx_type)),
                int(r.gas_used),
                int(r.cumulative_gas_used),
                wei(r.effective_gas_price),
                r.contract_address.map_or(Value::Null, |a| blob(a.as_slice())),
                r.blob_gas_used.map_or(Value::Null, int),
                wei(r.blob_gas_price),
                Value::Integer(i64::from(r.log_count)),
            ]
        })
        .collect();
    let logs = all
        .flat_map(|r| r.logs.iter())
        .map(|l| {
            let topic = |i: usize| l.inner.data.topics().get(i).map_or(Value::Null, |t| blob(t.as_slice()));
            vec![
                Value::Integer(i64::from(l.log_index)),
                int(b.number),
                Value::Integer(i64::from(l.tx_index)),
                blob(l.tx_hash.as_slice()),
                blob(l.inner.address.as_slice()),
                topic(0),
                topic(1),
                topic(2),
                topic(3),
                blob(l.inner.data.data.as_ref()),
            ]
        })
        .collect();
    Rows { block, txs, receipts, logs }
}

const INSERT_BLOCK: &str = "INSERT INTO blocks (hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, \
    base_fee_per_gas, state_root, transactions_root, receipts_root, size, tx_count, full_txs, canonical, hash_verified, \
    provider_id, fetched_at_ms, logs_bloom, receipts, receipts_verified, logs_selection) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, NULL, ?17, ?18, ?19, ?20, ?21)";
const INSERT_TX: &str = "INSERT INTO transactions (block_id, idx, hash, from_address, to_address, value, nonce, gas, \
    gas_price, max_fee_per_gas, max_priority_fee_per_gas, input, tx_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_RECEIPT: &str = "INSERT INTO receipts (block_id, idx, tx_hash, status, post_state, tx_type, gas_used, \
    cumulative_gas_used, effective_gas_price, contract_address, blob_gas_used, blob_gas_price, log_count) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_LOG: &str = "INSERT INTO logs (block_id, log_index, block_number, tx_idx, tx_hash, address, topic0, \
    topic1, topic2, topic3, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const HASH_INDEXES: [&str; 3] = [
    include_str!("../sql/store/tx_hash_index_create.sql"),
    include_str!("../sql/store/receipts_hash_index_create.sql"),
    include_str!("../sql/store/logs_tx_index_create.sql"),
];

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

async fn fresh_file(db: &std::path::Path) -> Res<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let t = Instant::now();
    let store = Store::open(&StoreOptions::new(db)).await?;
    let created = t.elapsed();
    store.close().await;
    let t = Instant::now();
    let store = Store::open(&StoreOptions::new(db)).await?;
    let reopened = t.elapsed();
    store.close().await;
    eprintln!(
        "store open: {:.1} ms creating and migrating a new file, {:.1} ms reopening it",
        created.as_secs_f64() * 1e3,
        reopened.as_secs_f64() * 1e3
    );
    Ok(())
}

fn insert(db: &std::path::Path, all: &[Rows], commit_blocks: usize) -> Res<Duration> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -8192)?;
    for index in ["transactions_hash", "receipts_tx_hash", "logs_tx"] {
        conn.execute(&format!("DROP INDEX IF EXISTS {index}"), [])?;
    }
    let started = Instant::now();
    for chunk in all.chunks(commit_blocks.max(1)) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ib = tx.prepare(INSERT_BLOCK)?;
            let mut it = tx.prepare(INSERT_TX)?;
            let mut ir = tx.prepare(INSERT_RECEIPT)?;
            let mut il = tx.prepare(INSERT_LOG)?;
            for r in chunk {
                ib.execute(rusqlite::params_from_iter(r.block.iter()))?;
                let id = Value::Integer(tx.last_insert_rowid());
                for t in &r.txs {
                    it.execute(rusqlite::params_from_iter(std::iter::once(&id).chain(t.iter().skip(1))))?;
                }
                for row in &r.receipts {
                    ir.execute(rusqlite::params_from_iter(std::iter::once(&id).chain(row.iter())))?;
                }
                for row in &r.logs {
                    il.execute(rusqlite::params_from_iter(std::iter::once(&id).chain(row.iter())))?;
                }
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// Rebuild the hash indexes the load dropped, as the end of a bulk load does.
fn rebuild(db: &std::path::Path) -> Res<Duration> {
    let conn = rusqlite::Connection::open(db)?;
    let started = Instant::now();
    for sql in HASH_INDEXES {
        conn.execute(sql, [])?;
    }
    Ok(started.elapsed())
}

/// The blocks of a recording (`examples/recorded.rs`), decoded with their receipts.
fn recorded(file: &std::path::Path) -> Res<Vec<Block>> {
    use blockstreamer::provider::receipts::{ReceiptsOf, decode_block_receipts};
    use std::io::BufRead;
    let opts = DecodeOptions { full_transactions: true, verify_header_hash: false, keep_raw: false };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(file)?).lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let n = v["n"].as_u64().ok_or("no n")?;
        let mut b = decode_block(&v["full"].to_string(), Want::Number(n), opts, ProviderId(0))?;
        let hashes: Vec<_> = b.transactions.iter().map(|t| t.hash).collect();
        let of = ReceiptsOf { keep_raw: false, ..ReceiptsOf::of(&b, &hashes) };
        b.receipts = Some(decode_block_receipts(&v["receipts"].to_string(), of, ProviderId(0))?);
        out.push(b);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Res<()> {
    let cli = Cli::parse();
    let all: Vec<Rows> = match &cli.recording {
        Some(file) => recorded(file)?.iter().map(rows).collect(),
        None => {
            let chain = SimChain::new(SimOptions {
                prefill: cli.blocks,
                txs_min: cli.txs,
                txs_max: cli.txs,
                reorg_probability: 0.0,
                block_time: Duration::from_secs(3600),
                ..SimOptions::default()
            });
            let opts = DecodeOptions { full_transactions: true, verify_header_hash: false, keep_raw: false };
            let mut all = Vec::new();
            for n in 1..=cli.blocks {
                let Some(b) = chain.block(n) else { break };
                all.push(rows(&decode_block(b.json(true).get(), Want::Number(n), opts, ProviderId(0))?));
            }
            all
        }
    };
    let txs: usize = all.iter().map(|r| r.txs.len()).sum();
    let logs: usize = all.iter().map(|r| r.logs.len()).sum();
    for round in 1..=cli.rounds {
        fresh_file(&cli.db).await?;
        let cpu = cpu_secs();
        let took = insert(&cli.db, &all, cli.commit_blocks)?;
        let (load_cpu, cpu) = (cpu_secs() - cpu, cpu_secs());
        #[allow(clippy::cast_precision_loss)]
        let (bps, tps) = (all.len() as f64 / took.as_secs_f64(), txs as f64 / took.as_secs_f64());
        println!(
            "sqlite-ceiling #{round}: {} blocks + {txs} transactions in {:.2} s = {bps:.0} blocks/s, {tps:.0} tx rows/s (commits of {} blocks)",
            all.len(),
            took.as_secs_f64(),
            cli.commit_blocks
        );
        // The same end state as a bulk load's: the hash indexes the load dropped, built again.
        let built = rebuild(&cli.db)?;
        let whole = took + built;
        #[allow(clippy::cast_precision_loss)]
        let with_index = all.len() as f64 / whole.as_secs_f64();
        println!(
            "sqlite-ceiling #{round}: with {logs} logs: load {:.2} s ({load_cpu:.2} CPU s), hash indexes rebuilt in {:.2} s ({:.2} CPU s): {:.2} s = {with_index:.0} blocks/s indexed",
            took.as_secs_f64(),
            built.as_secs_f64(),
            cpu_secs() - cpu,
            whole.as_secs_f64()
        );
    }
    Ok(())
}
