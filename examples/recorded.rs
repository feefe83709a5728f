//! A provider that costs nothing, for benchmarks: record a chain's answers from a node once
//! (full blocks, hashes-only blocks, block receipts), then serve them from memory over
//! JSON-RPC, so a benchmark measures the client and not the node.
//!
//! ```sh
//! cargo run --release --example recorded -- record --url http://127.0.0.1:8545 --to 2000 --out chain.jsonl
//! cargo run --release --example recorded -- serve --file chain.jsonl --port 18700
//! ```
//!
//! Served: `eth_chainId`, `net_version`, `eth_blockNumber`, `eth_getBlockByNumber`,
//! `eth_getBlockByHash`, `eth_getBlockReceipts`, `eth_getTransactionReceipt`,
//! `eth_getTransactionByHash`, `eth_getLogs` (address and topic filters over the recorded
//! receipts' logs). Every answer but `eth_getLogs` is the node's own bytes, copied.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use jsonrpsee::server::{RpcModule, Server, ServerConfig};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Ask the node for blocks `from..=to` (full, hashes only, receipts) and write them, one
    /// JSON line per block after a first line with the chain id.
    Record {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve a recording on 127.0.0.1:`port` until killed.
    Serve {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        port: u16,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match Cli::parse().cmd {
        Cmd::Record { url, from, to, out } => record(&url, from, to, &out).await,
        Cmd::Serve { file, port } => serve(&file, port).await,
    }
}

async fn record(url: &str, from: u64, to: u64, out: &PathBuf) -> Result<(), Error> {
    let c = HttpClientBuilder::default()
        .max_response_size(u32::MAX)
        .request_timeout(Duration::from_secs(120))
        .build(url)?;
    let chain_id: String = c.request("eth_chainId", rpc_params![]).await?;
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    writeln!(w, "{}", serde_json::json!({ "chain_id": chain_id }))?;
    let started = Instant::now();
    let mut n = from;
    while n <= to {
        let last = (n + 24).min(to);
        let mut batch = BatchRequestBuilder::new();
        for k in n..=last {
            batch.insert("eth_getBlockByNumber", rpc_params![format!("{k:#x}"), true])?;
            batch.insert("eth_getBlockByNumber", rpc_params![format!("{k:#x}"), false])?;
            batch.insert("eth_getBlockReceipts", rpc_params![format!("{k:#x}")])?;
        }
        let answers: Vec<Box<RawValue>> = c
            .batch_request::<Box<RawValue>>(batch)
            .await?
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for (k, three) in (n..=last).zip(answers.chunks(3)) {
            let [full, hashes, receipts] = three else { return Err(format!("block {k}: short answer").into()) };
            writeln!(
                w,
                "{{\"n\":{k},\"full\":{},\"hashes\":{},\"receipts\":{}}}",
                full.get(),
                hashes.get(),
                receipts.get()
            )?;
        }
        n = last + 1;
    }
    w.flush()?;
    eprintln!("recorded blocks {from}..={to} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One recorded block.
struct Block {
    full: Box<RawValue>,
    hashes: Box<RawValue>,
    receipts: Box<RawValue>,
    /// Each receipt's JSON, in order.
    receipt: Vec<Box<RawValue>>,
    /// Each transaction's JSON, in order.
    txs: Vec<Box<RawValue>>,
    logs: Vec<LogEntry>,
}

/// A log with what a filter tests, and its bytes as the receipt holds them.
struct LogEntry {
    address: String,
    topics: Vec<String>,
    json: Box<RawValue>,
}

struct Chain {
    chain_id: String,
    blocks: Vec<Block>,
    by_hash: HashMap<String, usize>,
    tx: HashMap<String, (usize, usize)>,
    calls: AtomicU64,
}

#[derive(Deserialize)]
struct Line {
    full: Box<RawValue>,
    hashes: Box<RawValue>,
    receipts: Box<RawValue>,
}

#[derive(Deserialize)]
struct Receipt {
    #[serde(rename = "transactionHash")]
    hash: String,
    logs: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct LogFields {
    address: String,
    topics: Vec<String>,
}

#[derive(Deserialize)]
struct BlockFields {
    hash: String,
    transactions: Vec<Box<RawValue>>,
}

fn load(file: &PathBuf) -> Result<Chain, Error> {
    let mut lines = std::io::BufReader::new(std::fs::File::open(file)?).lines();
    let head: Value = serde_json::from_str(&lines.next().ok_or("empty recording")??)?;
    let chain_id = head["chain_id"].as_str().ok_or("no chain id")?.to_string();
    let mut chain =
        Chain { chain_id, blocks: Vec::new(), by_hash: HashMap::new(), tx: HashMap::new(), calls: AtomicU64::new(0) };
    for line in lines {
        let l: Line = serde_json::from_str(&line?)?;
        let fields: BlockFields = serde_json::from_str(l.full.get())?;
        let receipts: Vec<Box<RawValue>> = serde_json::from_str(l.receipts.get())?;
        let i = chain.blocks.len();
        let mut logs = Vec::new();
        for (k, r) in receipts.iter().enumerate() {
            let parsed: Receipt = serde_json::from_str(r.get())?;
            chain.tx.insert(parsed.hash.to_ascii_lowercase(), (i, k));
            for json in parsed.logs {
                let f: LogFields = serde_json::from_str(json.get())?;
                let topics = f.topics.iter().map(|t| t.to_ascii_lowercase()).collect();
                logs.push(LogEntry { address: f.address.to_ascii_lowercase(), topics, json });
            }
        }
        chain.by_hash.insert(fields.hash.to_ascii_lowercase(), i);
        chain.blocks.push(Block {
            full: l.full,
            hashes: l.hashes,
            receipts: l.receipts,
            receipt: receipts,
            txs: fields.transactions,
            logs,
        });
    }
    Ok(chain)
}

fn bad(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, msg.into(), None::<()>)
}

fn height(tag: &str, head: u64) -> Result<u64, ErrorObjectOwned> {
    match tag {
        "latest" | "safe" | "finalized" | "pending" => Ok(head),
        "earliest" => Ok(0),
        s => s
            .strip_prefix("0x")
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or_else(|| bad(format!("bad block tag {s:?}"))),
    }
}

/// `eth_getLogs` filter: heights (or one block hash), addresses, topics per position.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    from_block: Option<String>,
    to_block: Option<String>,
    block_hash: Option<String>,
    address: Option<Value>,
    topics: Option<Vec<Value>>,
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(vec![s.to_ascii_lowercase()]),
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect()),
        _ => Some(Vec::new()),
    }
}

fn logs(c: &Chain, f: &Filter) -> Result<Box<RawValue>, ErrorObjectOwned> {
    let head = c.blocks.len().saturating_sub(1) as u64;
    let (lo, hi) = match &f.block_hash {
        Some(h) => {
            let i = *c.by_hash.get(&h.to_ascii_lowercase()).ok_or_else(|| bad("unknown block hash"))? as u64;
            (i, i)
        }
        None => (
            height(f.from_block.as_deref().unwrap_or("latest"), head)?,
            height(f.to_block.as_deref().unwrap_or("latest"), head)?.min(head),
        ),
    };
    let addresses = f.address.as_ref().and_then(strings);
    let topics: Vec<Option<Vec<String>>> = f.topics.iter().flatten().map(strings).collect();
    let mut out = String::from("[");
    for b in c.blocks.iter().take(usize::try_from(hi).unwrap_or(usize::MAX) + 1).skip(usize::try_from(lo).unwrap_or(0))
    {
        for l in &b.logs {
            if addresses.as_ref().is_some_and(|a| !a.contains(&l.address)) {
                continue;
            }
            let ok = topics.iter().enumerate().all(|(i, want)| match want {
                None => true,
                Some(w) => l.topics.get(i).is_some_and(|t| w.contains(t)),
            });
            if ok {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(l.json.get());
            }
        }
    }
    out.push(']');
    RawValue::from_string(out).map_err(|e| bad(e.to_string()))
}

fn module(chain: Arc<Chain>) -> Result<RpcModule<Arc<Chain>>, Error> {
    let mut m = RpcModule::new(chain);
    let head = |c: &Chain| c.blocks.len().saturating_sub(1) as u64;
    m.register_method("eth_chainId", |_, c, _| c.chain_id.clone())?;
    m.register_method("net_version", |_, c, _| {
        u64::from_str_radix(c.chain_id.trim_start_matches("0x"), 16).unwrap_or(0).to_string()
    })?;
    m.register_method("eth_blockNumber", move |_, c, _| format!("{:#x}", head(c)))?;
    m.register_method(
        "eth_getBlockByNumber",
        move |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (tag, full): (String, bool) = p.parse()?;
            let n = height(&tag, head(c))?;
            Ok(c.blocks
                .get(usize::try_from(n).unwrap_or(usize::MAX))
                .map(|b| if full { b.full.clone() } else { b.hashes.clone() }))
        },
    )?;
    m.register_method(
        "eth_getBlockByHash",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (hash, full): (String, bool) = p.parse()?;
            Ok(c.by_hash
                .get(&hash.to_ascii_lowercase())
                .map(|&i| if full { c.blocks[i].full.clone() } else { c.blocks[i].hashes.clone() }))
        },
    )?;
    m.register_method(
        "eth_getBlockReceipts",
        move |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (id,): (String,) = p.parse()?;
            let i = match c.by_hash.get(&id.to_ascii_lowercase()) {
                Some(&i) => i,
                None => usize::try_from(height(&id, head(c))?).unwrap_or(usize::MAX),
            };
            Ok(c.blocks.get(i).map(|b| b.receipts.clone()))
        },
    )?;
    m.register_method(
        "eth_getTransactionReceipt",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (hash,): (String,) = p.parse()?;
            Ok(c.tx.get(&hash.to_ascii_lowercase()).map(|&(b, k)| c.blocks[b].receipt[k].clone()))
        },
    )?;
    m.register_method(
        "eth_getTransactionByHash",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (hash,): (String,) = p.parse()?;
            Ok(c.tx.get(&hash.to_ascii_lowercase()).and_then(|&(b, k)| c.blocks[b].txs.get(k).cloned()))
        },
    )?;
    m.register_method("eth_getLogs", |p: Params<'_>, c, _| -> Result<Box<RawValue>, ErrorObjectOwned> {
        c.calls.fetch_add(1, Ordering::Relaxed);
        let (f,): (Filter,) = p.parse()?;
        logs(c, &f)
    })?;
    Ok(m)
}

async fn serve(file: &PathBuf, port: u16) -> Result<(), Error> {
    let started = Instant::now();
    let chain = Arc::new(load(file)?);
    let logs: usize = chain.blocks.iter().map(|b| b.logs.len()).sum();
    eprintln!(
        "loaded {} blocks, {} transactions, {logs} logs in {:.1} s",
        chain.blocks.len(),
        chain.tx.len(),
        started.elapsed().as_secs_f64()
    );
    let config = ServerConfig::builder()
        .max_response_body_size(u32::MAX)
        .max_request_body_size(u32::MAX)
        .max_connections(4096)
        .build();
    let server = Server::builder().set_config(config).build(("127.0.0.1", port)).await?;
    println!("serving on http://{}", server.local_addr()?);
    let handle = server.start(module(chain.clone())?);
    handle.stopped().await;
    eprintln!("served {} calls", chain.calls.load(Ordering::Relaxed));
    Ok(())
}
