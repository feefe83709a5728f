//! The plain-SQLite ceiling for the rows a backfill of full blocks writes (issue 14): a minimal
//! rusqlite program inserting the simulated chain's blocks and transactions into a file made by
//! blockstreamer's own migrations (hash indexes dropped, as during a bulk load), with prepared
//! statements in large transactions and nothing else: no fetching, no decoding, no checks, no
//! pipeline. The values are decoded up front and not timed.
//!
//! `cargo run --release --example sqlite_ceiling -- --blocks 20000 --txs 20`

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
fn rows(b: &Block) -> (Vec<Value>, Vec<Vec<Value>>) {
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
        Value::Integer(0),
        Value::Null,
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
    (block, txs)
}

const INSERT_BLOCK: &str = "INSERT INTO blocks (hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, \
    base_fee_per_gas, state_root, transactions_root, receipts_root, size, tx_count, full_txs, canonical, hash_verified, \
    provider_id, fetched_at_ms, logs_bloom, receipts, receipts_verified, logs_selection) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, NULL, ?17, ?18, ?19, ?20, ?21)";
const INSERT_TX: &str = "INSERT INTO transactions (block_id, idx, hash, from_address, to_address, value, nonce, gas, \
    gas_price, max_fee_per_gas, max_priority_fee_per_gas, input, tx_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

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

fn insert(db: &std::path::Path, all: &[(Vec<Value>, Vec<Vec<Value>>)], commit_blocks: usize) -> Res<Duration> {
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
            for (block, txs) in chunk {
                ib.execute(rusqlite::params_from_iter(block.iter()))?;
                let id = Value::Integer(tx.last_insert_rowid());
                for t in txs {
                    it.execute(rusqlite::params_from_iter(std::iter::once(&id).chain(t.iter().skip(1))))?;
                }
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> Res<()> {
    let cli = Cli::parse();
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
        let block = decode_block(b.json(true).get(), Want::Number(n), opts, ProviderId(0))?;
        all.push(rows(&block));
    }
    let txs: usize = all.iter().map(|(_, t)| t.len()).sum();
    for round in 1..=cli.rounds {
        fresh_file(&cli.db).await?;
        let took = insert(&cli.db, &all, cli.commit_blocks)?;
        #[allow(clippy::cast_precision_loss)]
        let (bps, tps) = (all.len() as f64 / took.as_secs_f64(), txs as f64 / took.as_secs_f64());
        println!(
            "sqlite-ceiling #{round}: {} blocks + {txs} transactions in {:.2} s = {bps:.0} blocks/s, {tps:.0} tx rows/s (commits of {} blocks)",
            all.len(),
            took.as_secs_f64(),
            cli.commit_blocks
        );
    }
    Ok(())
}
