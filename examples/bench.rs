//! Benchmark helpers (run with `cargo run --release --example bench -- <cmd>`): fill an anvil
//! chain, measure a node's own serving ceiling, measure raw ingest from the simulated chain, and
//! measure routing (tip latency with a slow provider, requests per block, credits by strategy).

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::Config;
use blockstreamer::model::ProviderId;
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
    /// Other shapes show what the node's time goes into (on anvil: recovering each transaction's
    /// sender for full blocks; headers and receipts are cheap).
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
        /// What to ask per block: `full` (eth_getBlockByNumber with transactions), `hashes`
        /// (header and tx hashes), `receipts` (eth_getBlockReceipts), `hashes+receipts`,
        /// `full+receipts`; `full+logs` adds one eth_getLogs of `--address` per batch range.
        #[arg(long, default_value = "full")]
        shape: String,
        /// The contract whose logs `full+logs` asks for.
        #[arg(long)]
        address: Option<String>,
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
        /// Fetch and store receipts and logs too (off: blocks and transactions, the issue-2 shape).
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        receipts: bool,
        /// Keep each block's JSON for `/rpc` (`[index] raw_json`, on by default).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        raw_json: bool,
        #[arg(long, default_value = "/tmp/bs-sim-ingest.db")]
        db: std::path::PathBuf,
    },
    /// Routing figures on the simulated chain behind fault proxies: tip latency with one slow
    /// provider (hedging on/off), requests per block (healthy and RPC-01 faults), head polls per
    /// minute, and credits spent by `best` vs `cheapest` with mixed prices.
    Routing {
        /// Blocks per scenario.
        #[arg(long, default_value_t = 300)]
        blocks: u64,
        /// Block time in milliseconds.
        #[arg(long, default_value_t = 200)]
        block_ms: u64,
        /// Only these parts: tip, cost, credits (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Cost of the header hash check (VAL-03): decode the same blocks with and without
    /// `verify_header_hash`, report µs per header for the difference.
    HeaderVerify {
        #[arg(long, default_value_t = 2_000)]
        blocks: u64,
        #[arg(long, default_value_t = 5)]
        rounds: u32,
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
        /// `store` (what ingest does: during the bulk load, commits go through the bulk
        /// connection) or `sqlx` (every commit through the sqlx writer, for comparison).
        #[arg(long, default_value = "store")]
        writer: String,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match Cli::parse().cmd {
        Cmd::Fill { url, blocks, txs } => fill(&url, blocks, txs).await,
        Cmd::Ceiling { url, from, to, concurrency, batch, shape, address } => {
            ceiling(&url, (from, to), concurrency, batch, &shape, address.as_deref()).await
        }
        Cmd::SimIngest { blocks, txs, batch, concurrency, telemetry, receipts, raw_json, db } => {
            sim_ingest(blocks, txs, (batch, concurrency), (telemetry, receipts, raw_json), &db).await
        }
        Cmd::SimPipeline { blocks, txs, commit_blocks, db, writer } => {
            sim_pipeline(blocks, txs, commit_blocks, &db, &writer).await
        }
        Cmd::HeaderVerify { blocks, rounds } => header_verify(blocks, rounds),
        Cmd::Routing { blocks, block_ms, only } => routing(blocks, Duration::from_millis(block_ms), &only).await,
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
    (from, to): (u64, u64),
    concurrency: usize,
    batch: u64,
    shape: &str,
    address: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (full, hashes, receipts) = match shape {
        "full" | "full+logs" => (true, false, false),
        "hashes" => (false, true, false),
        "receipts" => (false, false, true),
        "hashes+receipts" => (false, true, true),
        "full+receipts" => (true, false, true),
        other => return Err(format!("unknown shape {other}").into()),
    };
    let logs_of = match (shape, address) {
        ("full+logs", None) => return Err("--shape full+logs needs --address".into()),
        ("full+logs", Some(a)) => Some(a),
        _ => None,
    };
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
                    if full || hashes {
                        req.insert("eth_getBlockByNumber", rpc_params![format!("{n:#x}"), full]).ok();
                    }
                    if receipts {
                        req.insert("eth_getBlockReceipts", rpc_params![format!("{n:#x}")]).ok();
                    }
                }
                if let Some(address) = logs_of {
                    let f = serde_json::json!({"fromBlock": format!("{a:#x}"), "toBlock": format!("{b:#x}"), "address": address});
                    req.insert("eth_getLogs", rpc_params![f]).ok();
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
        "ceiling: {n} blocks in {secs:.3} s = {:.0} blocks/s ({:.1} MB of JSON), concurrency {concurrency}, batch {batch}, {shape}",
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
    writer: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use blockstreamer::model::CommitBatch;
    if !matches!(writer, "store" | "sqlx") {
        return Err(format!("unknown writer {writer}").into());
    }
    use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
    use blockstreamer::store::{Store, StoreOptions};
    remove_db(db);
    let chain = bench_chain(blocks, txs);
    let store = Store::open(&StoreOptions::new(db)).await?;
    store.register_providers(&[(ProviderId(0), "sim".into(), "sim://".into())]).await?;
    let opts = DecodeOptions { full_transactions: true, verify_header_hash: true, keep_raw: false };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<blockstreamer::model::Block>>(1);
    let started = Instant::now();
    // As `backfill` does for large ranges: load without the tx-hash index, rebuild it at the end.
    store.begin_bulk_load(true).await?;
    let decoder = tokio::spawn(async move {
        let mut n = 0;
        while n <= blocks {
            let end = (n + commit_blocks as u64 - 1).min(blocks);
            let mut batch = Vec::with_capacity(commit_blocks);
            for k in n..=end {
                let Some(b) = chain.block(k) else { break };
                match decode_block(b.json(true).get(), Want::Number(k), opts, ProviderId(0)) {
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
        let batch = CommitBatch { reorg: None, blocks: batch };
        if writer == "sqlx" {
            store.commit_batch(&batch).await?;
        } else {
            store.commit_owned(batch).await?;
        }
    }
    decoder.await?;
    store.end_bulk_load().await?;
    let secs = started.elapsed().as_secs_f64();
    store.close().await;
    println!(
        "sim-pipeline: {stored} blocks x {txs} txs decoded, hash-verified and committed (index rebuilt) in {secs:.2} s = {:.0} blocks/s, {:.0} tx/s (commit {commit_blocks}, writer {writer})",
        stored as f64 / secs,
        stored as f64 * f64::from(txs) / secs
    );
    Ok(())
}

async fn sim_ingest(
    blocks: u64,
    txs: u32,
    (batch, concurrency): (usize, usize),
    (telemetry, receipts, raw_json): (bool, bool, bool),
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
    config.index.receipts = Some(receipts);
    config.index.raw_json = raw_json;
    config.add_rpc_urls(&urls);
    let app = App::start(AppOptions { db: db.to_path_buf(), config, progress: false }).await?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let report = app.backfill(0, blocks, &cancel).await?;
    let secs = started.elapsed().as_secs_f64();
    app.shutdown().await;
    let mb = std::fs::metadata(db).map_or(0.0, |m| m.len() as f64 / 1e6);
    println!(
        "sim-ingest: {} blocks x {txs} txs in {secs:.2} s = {:.0} blocks/s, {:.0} tx/s, file {mb:.1} MB (batch {batch}, concurrency {concurrency}, telemetry {telemetry}, receipts {receipts}, raw_json {raw_json})",
        report.fetched,
        report.fetched as f64 / secs,
        report.fetched as f64 * f64::from(txs) / secs
    );
    Ok(())
}

/// What one routing scenario measured.
#[derive(Debug, Default)]
struct RouteReport {
    lat_ms: Vec<i64>,
    block_fetches: i64,
    head_polls_per_min: Vec<(String, f64)>,
    usd: f64,
    credits: i64,
    fetch_usd: f64,
    fetch_credits: i64,
    per_provider: Vec<(String, i64)>,
}

struct Scenario {
    providers: usize,
    tune: Box<dyn Fn(&mut Config)>,
    scripts: Vec<blockstreamer::fault::Script>,
    blocks: u64,
    block_time: Duration,
    /// (provider index, price per million credits)
    prices: Vec<f64>,
}

async fn run_scenario(sc: Scenario) -> Result<RouteReport, Box<dyn std::error::Error>> {
    use blockstreamer::fault::{FaultProxy, Script};
    let chain = SimChain::new(SimOptions {
        prefill: 10,
        seed: 9,
        reorg_probability: 0.0,
        block_time: Duration::from_secs(3600),
        ..SimOptions::default()
    });
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..sc.providers {
        let s = sim::serve(chain.clone(), SimProviderOptions { name: format!("s{i}"), lag: 0 }).await?;
        let script = sc.scripts.get(i).cloned().unwrap_or_else(Script::default);
        proxies.push(FaultProxy::start(&s.url(), "127.0.0.1:0".parse()?, script).await?);
        servers.push(s);
    }
    let db = std::env::temp_dir().join(format!("bs-routing-{}.db", std::process::id()));
    remove_db(&db);
    let mut config = Config { poll_interval_ms: 100, ..Config::default() };
    config.add_rpc_urls(&proxies.iter().map(FaultProxy::url).collect::<Vec<_>>());
    for (i, p) in config.providers.iter_mut().enumerate() {
        p.name = Some(format!("p{}", i + 1));
        p.price_per_million_credits = sc.prices.get(i).copied();
    }
    (sc.tune)(&mut config);
    let app = Arc::new(App::start(AppOptions { db: db.clone(), config, progress: false }).await?);
    let cancel = CancellationToken::new();
    let follower = {
        let (app, cancel) = (app.clone(), cancel.clone());
        tokio::spawn(async move { app.follow(Some(0), &cancel).await })
    };
    let wait_stored = |n: u64| {
        let app = app.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end {
                if app.store.recent_canonical(1).await.ok().and_then(|v| v.last().map(|l| l.number)) >= Some(n) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    if !wait_stored(chain.head_number()).await {
        return Err("did not catch up".into());
    }
    let first = chain.head_number() + 1;
    let started_ms = blockstreamer::types::now_ms();
    let mut made = Vec::new();
    let mut tick = tokio::time::interval(sc.block_time);
    tick.tick().await;
    for _ in 0..sc.blocks {
        tick.tick().await;
        made.push((chain.tick(), blockstreamer::types::now_ms()));
    }
    if !wait_stored(chain.head_number()).await {
        return Err("did not settle".into());
    }
    let ended_ms = blockstreamer::types::now_ms();
    tokio::time::sleep(Duration::from_millis(400)).await;
    cancel.cancel();
    follower.await??;
    let app = Arc::try_unwrap(app).map_err(|_| "app still shared")?;
    app.shutdown().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display())).await?;
    let mut r = RouteReport::default();
    for (n, t) in &made {
        let at: i64 = sqlx::query_scalar("SELECT fetched_at_ms FROM blocks WHERE canonical = 1 AND number = ?1")
            .bind(i64::try_from(*n)?)
            .fetch_one(&pool)
            .await?;
        r.lat_ms.push(at - t);
    }
    let last = first + sc.blocks - 1;
    r.block_fetches = sqlx::query_scalar(
        "SELECT count(*) FROM provider_requests WHERE method = 'eth_getBlockByNumber' AND block_number BETWEEN ?1 AND ?2",
    )
    .bind(i64::try_from(first)?)
    .bind(i64::try_from(last)?)
    .fetch_one(&pool)
    .await?;
    let mins = (ended_ms - started_ms) as f64 / 60_000.0;
    let polls: Vec<(String, i64)> = sqlx::query_as(
        "SELECT provider, count(*) FROM provider_requests_view WHERE head_reported IS NOT NULL OR (method = 'eth_getBlockByNumber' AND block_number IS NULL) AND ts_ms BETWEEN ?1 AND ?2 GROUP BY provider ORDER BY provider",
    )
    .bind(started_ms)
    .bind(ended_ms)
    .fetch_all(&pool)
    .await?;
    r.head_polls_per_min = polls.into_iter().map(|(p, n)| (p, n as f64 / mins)).collect();
    r.per_provider = sqlx::query_as(
        "SELECT provider, count(*) FROM provider_requests_view WHERE method = 'eth_getBlockByNumber' AND block_number BETWEEN ?1 AND ?2 GROUP BY provider ORDER BY provider",
    )
    .bind(i64::try_from(first)?)
    .bind(i64::try_from(last)?)
    .fetch_all(&pool)
    .await?;
    let spend: Vec<(String, i64)> = sqlx::query_as(
        "SELECT p.name, coalesce(sum(r.credits), 0) FROM provider_requests r JOIN providers p ON p.id = r.provider_id WHERE r.ts_ms BETWEEN ?1 AND ?2 GROUP BY p.name ORDER BY p.name",
    )
    .bind(started_ms)
    .bind(ended_ms)
    .fetch_all(&pool)
    .await?;
    for (name, credits) in spend {
        let i: usize = name.trim_start_matches('p').parse::<usize>()? - 1;
        r.credits += credits;
        r.usd += credits as f64 * sc.prices.get(i).copied().unwrap_or(0.0) / 1e6;
    }
    let fetch_spend: Vec<(String, i64)> = sqlx::query_as(
        "SELECT p.name, coalesce(sum(r.credits), 0) FROM provider_requests r JOIN providers p ON p.id = r.provider_id WHERE r.block_number BETWEEN ?1 AND ?2 GROUP BY p.name",
    )
    .bind(i64::try_from(first)?)
    .bind(i64::try_from(last)?)
    .fetch_all(&pool)
    .await?;
    for (name, credits) in fetch_spend {
        let i: usize = name.trim_start_matches('p').parse::<usize>()? - 1;
        r.fetch_credits += credits;
        r.fetch_usd += credits as f64 * sc.prices.get(i).copied().unwrap_or(0.0) / 1e6;
    }
    pool.close().await;
    remove_db(&db);
    drop(proxies);
    Ok(r)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn pct(v: &[i64], p: f64) -> i64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

async fn routing(blocks: u64, block_time: Duration, only: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let want = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    use blockstreamer::config::Strategy;
    use blockstreamer::fault::{Fault, Rule, Script};
    let slow = || Script {
        seed: 5,
        rules: vec![Rule::always("slow", Fault::Delay { ms: 2_000 }).probability(0.5).heights(0, u64::MAX)],
    };
    println!("routing benchmark: {blocks} blocks per scenario, block time {block_time:?}, head poll 100 ms");
    // 1. tip latency, one provider delaying half its block answers by 2 s
    let tip_cases = if want("tip") {
        vec![
            (Strategy::RoundRobin, false),
            (Strategy::RoundRobin, true),
            (Strategy::Best, false),
            (Strategy::Best, true),
        ]
    } else {
        vec![]
    };
    for (strategy, hedge) in tip_cases {
        let r = run_scenario(Scenario {
            providers: 3,
            tune: Box::new(move |c| {
                c.routing.strategy = strategy;
                c.routing.hedge = hedge;
            }),
            scripts: vec![slow()],
            blocks,
            block_time,
            prices: vec![],
        })
        .await?;
        println!(
            "tip latency, p1 slow, strategy {:<11} hedge {:<5}: p50 {:>5} ms  p95 {:>5} ms  p99 {:>5} ms  max {:>5} ms; block fetches/block {:.2}",
            strategy.as_str(),
            hedge,
            pct(&r.lat_ms, 0.5),
            pct(&r.lat_ms, 0.95),
            pct(&r.lat_ms, 0.99),
            r.lat_ms.iter().max().copied().unwrap_or(0),
            r.block_fetches as f64 / blocks as f64
        );
    }
    // 2. request cost, healthy and with RPC-01's faults
    if want("cost") {
        let healthy = run_scenario(Scenario {
            providers: 3,
            tune: Box::new(|_| {}),
            scripts: vec![],
            blocks,
            block_time,
            prices: vec![],
        })
        .await?;
        println!(
            "request cost, 3 healthy providers: {:.3} block fetches per stored block; p99 tip latency {} ms; head polls/min per provider {:?}",
            healthy.block_fetches as f64 / blocks as f64,
            pct(&healthy.lat_ms, 0.99),
            healthy.head_polls_per_min.iter().map(|(p, n)| format!("{p}={n:.0}")).collect::<Vec<_>>()
        );
        let down = || {
            Script::single(Rule::always(
                "down",
                Fault::Http {
                    status: 500,
                    headers: Default::default(),
                    body: Some(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal"}}"#.into()),
                },
            ))
        };
        let faulty = run_scenario(Scenario {
            providers: 4,
            tune: Box::new(|_| {}),
            scripts: vec![down(), down(), down()],
            blocks,
            block_time,
            prices: vec![],
        })
        .await?;
        println!(
            "request cost, RPC-01 (3 of 4 answer 500): {:.3} block fetches per stored block (all providers, failures included); by provider {:?}; p99 tip latency {} ms",
            faulty.block_fetches as f64 / blocks as f64,
            faulty.per_provider,
            pct(&faulty.lat_ms, 0.99)
        );
    }
    // 3. credits: a free but slower provider, a cheap one, an expensive fast one
    let prices = vec![0.0, 2.0, 10.0];
    let strategies = if want("credits") { vec![Strategy::Best, Strategy::Cheapest] } else { vec![] };
    let lag = |ms: u64| Script::single(Rule::always("lat", Fault::Delay { ms }));
    for strategy in strategies {
        let r = run_scenario(Scenario {
            providers: 3,
            tune: Box::new(move |c| c.routing.strategy = strategy),
            scripts: vec![lag(40), lag(20), Script::default()],
            blocks,
            block_time,
            prices: prices.clone(),
        })
        .await?;
        println!(
            "credits, strategy {:<8}: block fetches {} credits = ${:.6}; all calls incl. head polls {} credits = ${:.6}; block fetches by provider {:?} (per M credits: p1 $0, p2 $2, p3 $10); p99 tip latency {} ms",
            strategy.as_str(),
            r.fetch_credits,
            r.fetch_usd,
            r.credits,
            r.usd,
            r.per_provider,
            pct(&r.lat_ms, 0.99)
        );
    }
    Ok(())
}

fn header_verify(blocks: u64, rounds: u32) -> Result<(), Box<dyn std::error::Error>> {
    use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
    let chain = bench_chain(blocks, 0);
    let raws: Vec<(u64, String)> =
        (1..=blocks).filter_map(|n| chain.block(n).map(|b| (n, b.json(false).get().to_string()))).collect();
    let run = |verify: bool| -> Result<f64, Box<dyn std::error::Error>> {
        let opts = DecodeOptions { full_transactions: false, verify_header_hash: verify, keep_raw: false };
        let t = Instant::now();
        for (n, raw) in &raws {
            let b = decode_block(raw, Want::Number(*n), opts, ProviderId(0))?;
            std::hint::black_box(b);
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / raws.len() as f64)
    };
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        best.0 = best.0.min(run(false)?);
        best.1 = best.1.min(run(true)?);
    }
    println!(
        "header-verify: {} headers; decode without check {:.2} µs, with keccak(RLP(header)) check {:.2} µs; the check costs {:.2} µs per header (best of {rounds})",
        raws.len(),
        best.0,
        best.1,
        best.1 - best.0
    );
    Ok(())
}
