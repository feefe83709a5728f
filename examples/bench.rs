//! Benchmark helpers (run with `cargo run --release --example bench -- <cmd>`): fill an anvil
//! chain, measure a node's own serving ceiling, and measure raw ingest from the simulated chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::Config;
use blockstreamer::sim::{self, SimChain, SimOptions, SimProviderOptions};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::BatchRequestBuilder;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Mine `blocks` blocks of `txs` value transfers each on a node with unlocked dev accounts.
    Fill {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 2000)]
        blocks: u64,
        #[arg(long, default_value_t = 20)]
        txs: usize,
    },
    /// How fast the node serves full blocks to a bare client that does no decoding or storing.
    Ceiling {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        batch: u64,
    },
    /// Raw pipeline throughput: backfill a prefilled simulated chain into a fresh SQLite file.
    SimIngest {
        #[arg(long, default_value_t = 20_000)]
        blocks: u64,
        #[arg(long, default_value_t = 20)]
        txs: u32,
        #[arg(long, default_value_t = 50)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        telemetry: bool,
        #[arg(long, default_value = "/tmp/bs-sim-ingest.db")]
        db: std::path::PathBuf,
    },
    /// The pipeline without HTTP: decode + verify + commit the simulated chain's JSON, with
    /// decoding of the next batch overlapping the commit of the previous one.
    SimPipeline {
        #[arg(long, default_value_t = 20_000)]
        blocks: u64,
        #[arg(long, default_value_t = 20)]
        txs: u32,
        #[arg(long, default_value_t = 1000)]
        commit_blocks: usize,
        #[arg(long, default_value = "/tmp/bs-sim-pipeline.db")]
        db: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match Cli::parse().cmd {
        Cmd::Fill { url, blocks, txs } => fill(&url, blocks, txs).await,
        Cmd::Ceiling { url, from, to, concurrency, batch } => ceiling(&url, from, to, concurrency, batch).await,
        Cmd::SimIngest { blocks, txs, batch, concurrency, telemetry, db } => {
            sim_ingest(blocks, txs, batch, concurrency, telemetry, &db).await
        }
        Cmd::SimPipeline { blocks, txs, commit_blocks, db } => sim_pipeline(blocks, txs, commit_blocks, &db).await,
    }
}

async fn fill(url: &str, blocks: u64, txs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let c = HttpClientBuilder::default().request_timeout(Duration::from_secs(120)).build(url)?;
    let accts: Vec<String> = c.request("eth_accounts", rpc_params![]).await?;
    c.request::<serde_json::Value, _>("evm_setAutomine", rpc_params![false]).await?;
    let started = Instant::now();
    for b in 0..blocks {
        let mut batch = BatchRequestBuilder::new();
        for i in 0..txs {
            let from = &accts[i % accts.len()];
            let to = &accts[(i + 3 + usize::try_from(b % 7)?) % accts.len()];
            let tx = serde_json::json!({"from": from, "to": to, "value": format!("{:#x}", 1 + b * 1000 + i as u64)});
            batch.insert("eth_sendTransaction", rpc_params![tx])?;
        }
        let r = c.batch_request::<serde_json::Value>(batch).await?;
        if r.num_failed_calls() > 0 {
            return Err(format!("block {b}: {} transactions refused", r.num_failed_calls()).into());
        }
        c.request::<serde_json::Value, _>("evm_mine", rpc_params![]).await?;
    }
    c.request::<serde_json::Value, _>("evm_setAutomine", rpc_params![true]).await?;
    eprintln!("filled {blocks} blocks x {txs} txs in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn ceiling(
    url: &str,
    from: u64,
    to: u64,
    concurrency: usize,
    batch: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let c = Arc::new(
        HttpClientBuilder::default().max_response_size(u32::MAX).request_timeout(Duration::from_secs(60)).build(url)?,
    );
    let chunks: Vec<(u64, u64)> =
        (from..=to).step_by(usize::try_from(batch)?).map(|a| (a, (a + batch - 1).min(to))).collect();
    let started = Instant::now();
    let bytes: usize = futures::stream::iter(chunks)
        .map(|(a, b)| {
            let c = c.clone();
            async move {
                let mut req = BatchRequestBuilder::new();
                for n in a..=b {
                    req.insert("eth_getBlockByNumber", rpc_params![format!("{n:#x}"), true]).ok();
                }
                match c.batch_request::<Box<RawValue>>(req).await {
                    Ok(r) => r.into_iter().flatten().map(|v| v.get().len()).sum::<usize>(),
                    Err(e) => {
                        eprintln!("batch {a}-{b}: {e}");
                        0
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .fold(0usize, |acc, n| async move { acc + n })
        .await;
    let secs = started.elapsed().as_secs_f64();
    let n = to - from + 1;
    println!(
        "ceiling: {n} blocks in {secs:.3} s = {:.0} blocks/s ({:.1} MB of JSON), concurrency {concurrency}, batch {batch}",
        n as f64 / secs,
        bytes as f64 / 1e6
    );
    Ok(())
}

/// A still simulated chain of `blocks` blocks with exactly `txs` transactions each.
fn bench_chain(blocks: u64, txs: u32) -> Arc<SimChain> {
    SimChain::new(SimOptions {
        prefill: blocks,
        txs_min: txs,
        txs_max: txs,
        reorg_probability: 0.0,
        block_time: Duration::from_secs(3600),
        ..SimOptions::default()
    })
}

fn remove_db(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn sim_pipeline(
    blocks: u64,
    txs: u32,
    commit_blocks: usize,
    db: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use blockstreamer::model::CommitBatch;
    use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
    use blockstreamer::store::{Store, StoreOptions};
    remove_db(db);
    let chain = bench_chain(blocks, txs);
    let store = Store::open(&StoreOptions::new(db)).await?;
    store.register_providers(&[("sim".into(), "sim://".into())]).await?;
    let opts = DecodeOptions { full_transactions: true, verify_header_hash: true };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<blockstreamer::model::Block>>(1);
    let started = Instant::now();
    // As `backfill` does for large ranges: load without the tx-hash index, rebuild it at the end.
    store.begin_bulk_load().await?;
    let decoder = tokio::spawn(async move {
        let mut n = 0;
        while n <= blocks {
            let end = (n + commit_blocks as u64 - 1).min(blocks);
            let mut batch = Vec::with_capacity(commit_blocks);
            for k in n..=end {
                let Some(b) = chain.block(k) else { break };
                match decode_block(b.json(true).get(), Want::Number(k), opts, 0) {
                    Ok(b) => batch.push(b),
                    Err(e) => panic!("decode {k}: {e}"),
                }
            }
            if tx.send(batch).await.is_err() {
                return;
            }
            n = end + 1;
        }
    });
    let mut stored = 0u64;
    while let Some(batch) = rx.recv().await {
        stored += batch.len() as u64;
        store.commit_batch(&CommitBatch { reorg: None, blocks: batch }).await?;
    }
    decoder.await?;
    store.end_bulk_load().await?;
    let secs = started.elapsed().as_secs_f64();
    store.close().await;
    println!(
        "sim-pipeline: {stored} blocks x {txs} txs decoded, hash-verified and committed (index rebuilt) in {secs:.2} s = {:.0} blocks/s, {:.0} tx/s (commit {commit_blocks})",
        stored as f64 / secs,
        stored as f64 * f64::from(txs) / secs
    );
    Ok(())
}

async fn sim_ingest(
    blocks: u64,
    txs: u32,
    batch: usize,
    concurrency: usize,
    telemetry: bool,
    db: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    remove_db(db);
    let t = Instant::now();
    let chain = bench_chain(blocks, txs);
    eprintln!("simulated chain of {blocks} blocks built in {:.1} s", t.elapsed().as_secs_f64());
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    for i in 0..2 {
        let s = sim::serve(chain.clone(), SimProviderOptions { name: format!("sim{i}"), lag: 0 }).await?;
        urls.push(s.url());
        servers.push(s);
    }
    let mut config = Config { batch_size: batch, concurrency, telemetry, ..Config::default() };
    config.add_rpc_urls(&urls);
    let app = App::start(AppOptions { db: db.to_path_buf(), config, progress: false }).await?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let report = app.backfill(0, blocks, &cancel).await?;
    let secs = started.elapsed().as_secs_f64();
    app.shutdown().await;
    println!(
        "sim-ingest: {} blocks x {txs} txs in {secs:.2} s = {:.0} blocks/s, {:.0} tx/s (batch {batch}, concurrency {concurrency}, telemetry {telemetry})",
        report.fetched,
        report.fetched as f64 / secs,
        report.fetched as f64 * f64::from(txs) / secs
    );
    Ok(())
}
