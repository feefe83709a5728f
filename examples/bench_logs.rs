//! Logs benchmark helpers (`cargo run --release --example bench_logs -- <cmd>`): fill an anvil
//! chain whose transactions emit ERC-20-like logs, and measure what the integrity checks cost
//! per block. The bare client's ceiling for the same calls is `bench ceiling --shape
//! full+receipts` / `full+logs`.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Deploy two token-like contracts (one emits Transfer + Approval per call, the other two
    /// Transfers + an Approval) and mine `blocks` blocks of `txs` calls alternating between them:
    /// 2.5 logs per transaction. Prints the two addresses.
    Fill {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 2000)]
        blocks: u64,
        #[arg(long, default_value_t = 20)]
        txs: usize,
    },
    /// What integrity costs per block, over a recording (`examples/recorded.rs record`): decoding
    /// a block's receipts with and without the receipts-root recomputation, and testing every
    /// log's address and topics against the header's logs bloom.
    VerifyCost {
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

const TRANSFER: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
const APPROVAL: &str = "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925";

/// LOG3(mem[0..32] = first calldata word, `topic`, CALLER, NUMBER + `salt`).
fn log3(topic: &str, salt: u8) -> String {
    format!("60{salt:02x}4301337f{topic}60205fa3")
}

/// Runtime of a token that emits `logs` logs per call; init code that deploys it.
fn token(logs: &[(&str, u8)]) -> String {
    let body: String = logs.iter().map(|(t, s)| log3(t, *s)).collect();
    let runtime = format!("5f355f52{body}00");
    let len = runtime.len() / 2;
    format!("0x60{len:02x}80600b6000396000f3{runtime}")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    match Cli::parse().cmd {
        Cmd::Fill { url, blocks, txs } => fill(&url, blocks, txs).await,
        Cmd::VerifyCost { file, rounds } => verify_cost(&file, rounds),
    }
}

/// Per block of the recording: (block, receipts JSON).
fn recording(file: &std::path::Path) -> Result<Vec<(blockstreamer::model::Block, String)>, Error> {
    use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
    use std::io::BufRead;
    let opts = DecodeOptions { full_transactions: true, verify_header_hash: true, keep_raw: false };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(file)?).lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let n = v["n"].as_u64().ok_or("no n")?;
        let block = decode_block(&v["full"].to_string(), Want::Number(n), opts, blockstreamer::model::ProviderId(0))
            .map_err(|e| e.to_string())?;
        out.push((block, v["receipts"].to_string()));
    }
    Ok(out)
}

fn verify_cost(file: &std::path::Path, rounds: u32) -> Result<(), Error> {
    use alloy_primitives::BloomInput;
    use blockstreamer::provider::receipts::{ReceiptsOf, decode_block_receipts, receipts_root};
    let blocks = recording(file)?;
    let (mut decode, mut root, mut bloom) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut logs = 0usize;
    for _ in 0..rounds {
        for (b, raw) in &blocks {
            let hashes: Vec<_> = b.transactions.iter().map(|t| t.hash).collect();
            let of = ReceiptsOf { tx_hashes: Some(&hashes), keep_raw: false, ..ReceiptsOf::of(b, &hashes) };
            let t = Instant::now();
            let r = decode_block_receipts(raw, of, blockstreamer::model::ProviderId(0)).map_err(|e| e.to_string())?;
            decode += t.elapsed();
            let t = Instant::now();
            let computed = receipts_root(&r.receipts);
            root += t.elapsed();
            if computed != b.receipts_root {
                return Err(format!("block {}: receipts root differs", b.number).into());
            }
            let t = Instant::now();
            let header = b.logs_bloom.ok_or("no bloom")?;
            for l in r.receipts.iter().flat_map(|r| &r.logs) {
                let ok = header.contains_input(BloomInput::Raw(l.inner.address.as_slice()))
                    && l.inner.data.topics().iter().all(|t| header.contains_input(BloomInput::Raw(t.as_slice())));
                if !ok {
                    return Err(format!("block {}: a log is not in the bloom", b.number).into());
                }
                logs += 1;
            }
            bloom += t.elapsed();
        }
    }
    let n = (blocks.len() as f64) * f64::from(rounds);
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "verify cost over {} blocks x {rounds} rounds ({:.1} logs/block): receipts decode incl. root check {:.1} µs/block, of which the receipts trie root {:.1} µs/block; bloom check of every log {:.2} µs/block",
        blocks.len(),
        logs as f64 / n,
        us(decode),
        us(root),
        us(bloom)
    );
    Ok(())
}

async fn deploy(c: &jsonrpsee::http_client::HttpClient, from: &str, code: String) -> Result<String, Error> {
    let hash: String = c
        .request("eth_sendTransaction", rpc_params![serde_json::json!({"from": from, "data": code, "gas": "0x100000"})])
        .await?;
    for _ in 0..200 {
        let r: serde_json::Value = c.request("eth_getTransactionReceipt", rpc_params![hash.clone()]).await?;
        if let Some(a) = r["contractAddress"].as_str() {
            return Ok(a.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("contract not deployed".into())
}

async fn fill(url: &str, blocks: u64, txs: usize) -> Result<(), Error> {
    let c = HttpClientBuilder::default().request_timeout(Duration::from_secs(120)).build(url)?;
    let accts: Vec<String> = c.request("eth_accounts", rpc_params![]).await?;
    let a = deploy(&c, &accts[0], token(&[(TRANSFER, 0), (APPROVAL, 0)])).await?;
    let b = deploy(&c, &accts[0], token(&[(TRANSFER, 0), (TRANSFER, 1), (APPROVAL, 0)])).await?;
    c.request::<serde_json::Value, _>("evm_setAutomine", rpc_params![false]).await?;
    let started = Instant::now();
    for n in 0..blocks {
        let mut batch = BatchRequestBuilder::new();
        for i in 0..txs {
            let to = if i % 2 == 0 { &a } else { &b };
            let data = format!("0x{:064x}", n * 1_000_003 + i as u64 * 7_919 + 1);
            let tx = serde_json::json!({"from": accts[i % accts.len()], "to": to, "data": data, "gas": "0x20000"});
            batch.insert("eth_sendTransaction", rpc_params![tx])?;
        }
        let r = c.batch_request::<serde_json::Value>(batch).await?;
        if r.num_failed_calls() > 0 {
            return Err(format!("block {n}: {} transactions refused", r.num_failed_calls()).into());
        }
        c.request::<serde_json::Value, _>("evm_mine", rpc_params![]).await?;
    }
    c.request::<serde_json::Value, _>("evm_setAutomine", rpc_params![true]).await?;
    eprintln!("filled {blocks} blocks x {txs} calls in {:.1} s", started.elapsed().as_secs_f64());
    println!("{a} {b}");
    Ok(())
}
