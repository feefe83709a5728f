//! The fault test bed: a truth (simulated chain or anvil), providers behind fault proxies, the
//! app following into a temp DB, and the fault-matrix measures (docs/testing.md) sampled every 100 ms.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppError, AppOptions};
use blockstreamer::config::Config;
use blockstreamer::fault::{FaultProxy, LoggedCall, Script};
use blockstreamer::sim::{self, SimChain, SimOptions, SimProvider, SimProviderOptions};
use sqlx::SqlitePool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, TempDb, canonical_hashes, inspect, temp_db};

/// Where the true chain comes from.
pub enum Truth {
    Sim(Arc<SimChain>),
    Anvil(Anvil),
}

impl Truth {
    pub async fn head(&self) -> u64 {
        match self {
            Self::Sim(c) => c.head_number(),
            Self::Anvil(a) => a.head().await,
        }
    }

    pub async fn hash(&self, n: u64) -> Option<String> {
        match self {
            Self::Sim(c) => c.block(n).map(|b| format!("{:#x}", b.hash)),
            Self::Anvil(a) => {
                let b = a.block(n, false).await;
                b.get("hash").and_then(|h| h.as_str()).map(str::to_string)
            }
        }
    }

    pub fn url(&self, sims: &[SimProvider], i: usize) -> String {
        match self {
            Self::Sim(_) => sims[i].url(),
            Self::Anvil(a) => a.url(),
        }
    }

    /// Produce the next block.
    pub async fn advance(&self) {
        match self {
            Self::Sim(c) => {
                c.tick();
            }
            Self::Anvil(a) => a.mine(1).await,
        }
    }
}

/// A quiet simulated chain (the test drives its clock).
pub fn sim_chain(prefill: u64, seed: u64) -> Arc<SimChain> {
    SimChain::new(SimOptions {
        prefill,
        seed,
        reorg_probability: 0.0,
        block_time: Duration::from_secs(3600),
        ..SimOptions::default()
    })
}

/// One sample of the measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub head_lag: i64,
    pub max: i64,
    pub missing: i64,
    pub dups: i64,
    pub link_breaks: i64,
}

/// Invariants of the stored canonical chain: (heights, missing, dups, link_breaks, partial).
pub async fn invariants(pool: &SqlitePool) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(include_str!("../../sql/checks/chain_invariants.sql")).fetch_one(pool).await.expect("invariants")
}

pub async fn stored_max(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(number), -1) FROM blocks WHERE canonical = 1")
        .fetch_one(pool)
        .await
        .expect("max")
}

/// The running bed.
pub struct Bed {
    pub truth: Arc<Truth>,
    pub _sims: Vec<SimProvider>,
    pub proxies: Vec<FaultProxy>,
    pub _db: TempDb,
    pub app: Arc<App>,
    pub cancel: CancellationToken,
    pub follow: Option<JoinHandle<Result<(), AppError>>>,
    pub pool: SqlitePool,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    pub started: Instant,
    sampler: Option<JoinHandle<()>>,
}

impl Bed {
    /// `n` providers, each behind a fault proxy with no rules, over `truth`; `tune` edits the
    /// config (providers are named p1..pn). Nothing runs until [`follow`](Self::follow).
    pub async fn new(truth: Truth, n: usize, tune: impl FnOnce(&mut Config)) -> Self {
        let mut sims = Vec::new();
        if let Truth::Sim(chain) = &truth {
            for i in 0..n {
                sims.push(
                    sim::serve(chain.clone(), SimProviderOptions { name: format!("sim{i}"), lag: 0 })
                        .await
                        .expect("serve"),
                );
            }
        }
        let mut proxies = Vec::new();
        for i in 0..n {
            let up = truth.url(&sims, i);
            proxies.push(
                FaultProxy::start(&up, "127.0.0.1:0".parse().expect("addr"), Script::default()).await.expect("proxy"),
            );
        }
        let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
        let names: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut config = config_for(&urls, &name_refs);
        config.poll_interval_ms = 100;
        tune(&mut config);
        let db = temp_db();
        let app =
            Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
        let pool = inspect(&db.path).await;
        Self {
            truth: Arc::new(truth),
            _sims: sims,
            proxies,
            _db: db,
            app,
            cancel: CancellationToken::new(),
            follow: None,
            pool,
            samples: Arc::default(),
            started: Instant::now(),
            sampler: None,
        }
    }

    /// Start the app's API (and alert evaluator, if enabled) on a free loopback port; returns
    /// the server and its base URL.
    pub async fn serve_api(&self) -> (blockstreamer::api::ApiServer, String) {
        let api = self.app.start_api(Some("127.0.0.1:0".parse().expect("addr")), &self.cancel).await.expect("api");
        let api = api.expect("[api] enabled");
        let base = format!("http://{}", api.addr());
        (api, base)
    }

    /// Start following from `from` and sampling the measures every 100 ms.
    pub fn follow(&mut self, from: u64) {
        let app = self.app.clone();
        let cancel = self.cancel.clone();
        self.follow = Some(tokio::spawn(async move { app.follow(Some(from), &cancel).await }));
        let (truth, pool, samples, cancel) =
            (self.truth.clone(), self.pool.clone(), self.samples.clone(), self.cancel.clone());
        let started = self.started;
        self.sampler = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let head = i64::try_from(truth.head().await).expect("i64");
                let max = stored_max(&pool).await;
                let (_, missing, dups, link_breaks, _) = invariants(&pool).await;
                let s = Sample { at: started.elapsed(), head_lag: head - max, max, missing, dups, link_breaks };
                samples.lock().expect("samples").push(s);
            }
        }));
    }

    /// Advance the truth every `every` in the background until the bed stops (or the handle
    /// is aborted).
    pub fn spawn_chain(&self, every: Duration) -> JoinHandle<()> {
        let (truth, cancel) = (self.truth.clone(), self.cancel.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => truth.advance().await,
                }
            }
        })
    }

    /// Advance the truth every `every` for `total`.
    pub async fn run_chain(&self, every: Duration, total: Duration) {
        let end = Instant::now() + total;
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        while Instant::now() < end {
            tick.tick().await;
            self.truth.advance().await;
        }
    }

    /// Wait until the stored head equals the truth's head (faults off), up to `timeout`.
    pub async fn settle(&self, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let head = i64::try_from(self.truth.head().await).expect("i64");
            if stored_max(&self.pool).await == head {
                return;
            }
            assert!(
                Instant::now() < end,
                "did not settle within {timeout:?}: truth {head}, stored {}",
                stored_max(&self.pool).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Samples taken in `[from, to)` since the bed started.
    pub fn samples_between(&self, from: Duration, to: Duration) -> Vec<Sample> {
        self.samples.lock().expect("samples").iter().filter(|s| s.at >= from && s.at < to).copied().collect()
    }

    /// Every sample so far.
    pub fn all_samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Heights in `from..=to` whose stored canonical hash differs from the truth.
    pub async fn mismatch(&self, from: u64, to: u64) -> Vec<u64> {
        let stored = canonical_hashes(&self.pool, from, to).await;
        let mut bad = Vec::new();
        for (n, h) in stored {
            if self.truth.hash(n).await.as_deref() != Some(h.as_str()) {
                bad.push(n);
            }
        }
        bad
    }

    /// Stop following; returns the follow result.
    pub async fn stop(mut self) -> (Self, Result<(), AppError>) {
        self.cancel.cancel();
        let res = match self.follow.take() {
            Some(h) => h.await.expect("follow task"),
            None => Ok(()),
        };
        if let Some(s) = self.sampler.take() {
            let _ = s.await;
        }
        (self, res)
    }

    /// The proxy log of provider `i` (0-based).
    pub fn log(&self, i: usize) -> Vec<LoggedCall> {
        self.proxies[i].log()
    }

    /// Assert the final invariants: missing, dups, link_breaks, partial all 0 and no mismatch.
    pub async fn assert_final(&self) {
        let (heights, missing, dups, link_breaks, partial) = invariants(&self.pool).await;
        assert!(heights > 0, "nothing stored");
        assert_eq!((missing, dups, link_breaks, partial), (0, 0, 0, 0), "missing, dups, link_breaks, partial");
        let max = u64::try_from(stored_max(&self.pool).await).expect("u64");
        let min: i64 = sqlx::query_scalar("SELECT min(number) FROM blocks WHERE canonical = 1")
            .fetch_one(&self.pool)
            .await
            .expect("min");
        let bad = self.mismatch(u64::try_from(min).expect("u64"), max).await;
        assert!(bad.is_empty(), "stored canonical hashes differ from the truth at {bad:?}");
    }
}

/// p99 (nearest rank) of values.
pub fn p99(mut v: Vec<i64>) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = (v.len() * 99).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}
