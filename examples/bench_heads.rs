//! Head-tracking benchmark against a mining anvil (`ANVIL_BIN`): tip latency (a block's first
//! sighting by an independent `newHeads` watcher → the block visible in our SQLite file) and
//! what tracking the head costs (requests and credits per stored block), for head-tracking
//! setups run one after another on the same machine:
//!
//! - `ws`: 3 providers, one with a `newHeads` subscription, two polled over HTTP;
//! - `poll`: 3 HTTP providers, the defaults (`eth_blockNumber`, standbys, quiet period);
//! - `before`: 3 HTTP providers as before issue 14 (`eth_getBlockByNumber("latest")` from every
//!   provider at every interval).
//!
//! `cargo run --release --example bench_heads -- --block-secs 1 --secs 60 --setups ws,poll,before`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::{Config, HeadPoll};
use clap::Parser;
use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use tokio_util::sync::CancellationToken;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Parser)]
struct Cli {
    /// anvil's --block-time.
    #[arg(long, default_value_t = 1)]
    block_secs: u64,
    /// How long each setup follows the chain.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Head poll interval (`poll_interval_ms`).
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    #[arg(long, value_delimiter = ',', default_value = "ws,poll,before")]
    setups: Vec<String>,
    /// USD per million credits of every provider (paid providers that do not serve are polled
    /// at `heads.standby_poll_interval_ms`).
    #[arg(long, default_value_t = 0.45)]
    price: f64,
}

struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    fn start(block_secs: u64) -> Res<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bin = std::env::var("ANVIL_BIN").unwrap_or_else(|_| "anvil".into());
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent", "--max-persisted-states", "0"])
            .args(["--block-time", &block_secs.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(700));
        Ok(Self { child, port })
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Times (since `t0`) at which heights were first seen by the watcher and became visible in the file.
#[derive(Default)]
struct Times {
    seen: std::collections::BTreeMap<u64, Duration>,
    stored: std::collections::BTreeMap<u64, Duration>,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn config(setup: &str, anvil: &Anvil, cli: &Cli) -> Res<Config> {
    let http = format!("http://127.0.0.1:{}", anvil.port);
    let mut c = Config::default();
    // Three entries for one node, each its own provider by name.
    c.add_rpc_urls(&[http.clone(), http.clone(), http]);
    for (i, p) in c.providers.iter_mut().enumerate() {
        p.name = Some(format!("p{}", i + 1));
        p.price_per_million_credits = Some(cli.price);
    }
    c.poll_interval_ms = cli.poll_ms;
    c.gap_repair = false;
    match setup {
        "ws" => c.providers[0].ws_url = Some(format!("ws://127.0.0.1:{}", anvil.port)),
        "poll" => {}
        "before" => {
            c.heads.poll = HeadPoll::Header;
            c.heads.quiet_fraction = 0.0;
            c.heads.standby_poll_interval_ms = cli.poll_ms;
        }
        other => return Err(format!("unknown setup {other}").into()),
    }
    Ok(c)
}

async fn run(setup: &str, cli: &Cli) -> Res<()> {
    let anvil = Anvil::start(cli.block_secs)?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("heads.db");
    let app = Arc::new(
        App::start(AppOptions { db: db.clone(), config: config(setup, &anvil, cli)?, progress: false }).await?,
    );
    let cancel = CancellationToken::new();
    let follower = {
        let (app, cancel) = (app.clone(), cancel.clone());
        tokio::spawn(async move { app.follow(None, &cancel).await })
    };
    let t0 = Instant::now();
    let times = Arc::new(Mutex::new(Times::default()));
    let watcher = {
        let times = times.clone();
        let client = WsClientBuilder::default().build(format!("ws://127.0.0.1:{}", anvil.port)).await?;
        let mut sub: Subscription<serde_json::Value> =
            client.subscribe("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe").await?;
        tokio::spawn(async move {
            let _client = client;
            while let Some(Ok(h)) = sub.next().await {
                let n = h["number"].as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
                if let (Some(n), Ok(mut t)) = (n, times.lock()) {
                    t.seen.entry(n).or_insert_with(|| t0.elapsed());
                }
            }
        })
    };
    // Visible in the file: a reader polling every millisecond, as a user's program would.
    let reader = {
        let (times, db, cancel) = (times.clone(), db.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || -> Res<()> {
            while !db.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let mut last = -1i64;
            while !cancel.is_cancelled() {
                let max: Option<i64> =
                    c.query_row("SELECT max(number) FROM blocks WHERE canonical = 1", [], |r| r.get(0)).unwrap_or(None);
                if let Some(m) = max.filter(|m| *m > last) {
                    let at = t0.elapsed();
                    if let Ok(mut t) = times.lock() {
                        for n in (last + 1).max(m)..=m {
                            t.stored.insert(u64::try_from(n)?, at);
                        }
                    }
                    last = m;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        })
    };
    // Warm-up: the first blocks set the block clock and the tip server.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let from_ms = blockstreamer::types::now_ms();
    let first = times.lock().map(|t| t.stored.keys().next_back().copied().unwrap_or(0) + 1).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(cli.secs)).await;
    let to_ms = blockstreamer::types::now_ms();
    cancel.cancel();
    follower.await??;
    watcher.abort();
    reader.await??;
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
    report(setup, cli, &db, &times, first, (from_ms, to_ms))
}

fn report(
    setup: &str,
    cli: &Cli,
    db: &std::path::Path,
    times: &Mutex<Times>,
    first: u64,
    (from_ms, to_ms): (i64, i64),
) -> Res<()> {
    let t = times.lock().map_err(|_| "poisoned")?;
    let mut lat: Vec<f64> = t
        .stored
        .iter()
        .filter(|(n, _)| **n >= first)
        .filter_map(|(n, s)| t.seen.get(n).map(|w| (s.as_secs_f64() - w.as_secs_f64()) * 1000.0))
        .collect();
    let blocks = lat.len();
    let c = rusqlite::Connection::open(db)?;
    let q = |sql: &str| -> Res<(i64, i64)> {
        Ok(c.query_row(sql, [from_ms, to_ms], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?)
    };
    let window = "ts_ms BETWEEN ?1 AND ?2";
    let head = q(&format!(
        "SELECT count(*), coalesce(sum(credits), 0) FROM provider_requests WHERE {window} AND \
         (method IN ('eth_blockNumber', 'eth_subscribe', 'eth_chainId') OR (method = 'eth_getBlockByNumber' AND block_number IS NULL))"
    ))?;
    let fetches = q(&format!(
        "SELECT count(*), coalesce(sum(credits), 0) FROM provider_requests WHERE {window} AND \
         method IN ('eth_getBlockByNumber', 'eth_getBlockByHash') AND block_number IS NOT NULL"
    ))?;
    let stored = c.query_row(
        "SELECT count(*) FROM blocks WHERE canonical = 1 AND fetched_at_ms BETWEEN ?1 AND ?2",
        [from_ms, to_ms],
        |r| r.get::<_, i64>(0),
    )?;
    #[allow(clippy::cast_precision_loss)]
    let per = |x: i64| x as f64 / stored.max(1) as f64;
    println!(
        "{setup:<7} block {} s, poll {} ms: {blocks} blocks; tip latency p50 {:.0} ms, p90 {:.0}, p99 {:.0}, max {:.0}; \
         head tracking {:.2} requests / {:.1} credits per stored block; block fetches {:.2} per stored block ({stored} stored)",
        cli.block_secs,
        cli.poll_ms,
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.9),
        percentile(&mut lat, 0.99),
        percentile(&mut lat, 1.0),
        per(head.0),
        per(head.1),
        per(fetches.0),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let cli = Cli::parse();
    for s in &cli.setups {
        run(s, &cli).await?;
    }
    Ok(())
}
