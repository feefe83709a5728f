//! The composition root: builds store, providers, fleet and ingest from config and wires them.
//!
//! This is the one place where information runs backwards: the resume point (the recent
//! canonical chain) is read from the store and handed to ingest as a `Window`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError};
use crate::fleet::{Fleet, FleetError, FleetOptions, HeadOptions, ProviderPolicy};
use crate::index::Indexing;
use crate::ingest::repair::{GapRepairer, RepairOptions};
use crate::ingest::{IngestError, IngestOptions, Syncer, Window};
use crate::model::{HealthState, IngestState, ProviderId, TelemetrySink};
use crate::provider::wire::DecodeOptions;
use crate::provider::{CreditPrices, Provider, ProviderError, ProviderSpec, SecretUrl};
use crate::store::DecodeBackfill;
use crate::store::{Store, StoreError, StoreOptions, TelemetryWriter};

mod demo;
mod sinks;
pub use demo::{DEMO_KEEP_BLOCKS, DEMO_PROFILES, DemoOptions, demo_contract, run_demo};

/// Anything that stops the application.
#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Range(#[from] crate::types::OutOfRange),
    #[error("[index]: {0}")]
    Index(#[from] crate::index::IndexError),
    #[error("database {db} holds chain {stored} but the providers serve chain {served}; use another --db")]
    ChainMismatch { db: String, stored: u64, served: String },
    #[error("no provider answered eth_chainId within {waited_ms} ms; {errors}")]
    Unreachable { waited_ms: u64, errors: String },
    #[error("{0}")]
    Other(String),
}

/// What every command that talks to providers needs.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub db: PathBuf,
    pub config: Config,
    /// Show an indicatif progress bar (a terminal is attached).
    pub progress: bool,
}

/// A wired-up pipeline: store, fleet, telemetry writer and background tasks.
#[derive(Debug)]
pub struct App {
    pub store: Store,
    pub fleet: Arc<Fleet>,
    pub telemetry: TelemetrySink,
    config: Config,
    /// What is indexed besides blocks (checked `[index]`).
    index: Arc<Indexing>,
    /// The head poller and other workers that feed telemetry.
    workers: TaskTracker,
    /// The telemetry writer, stopped after the workers.
    writer: TaskTracker,
    /// Stops the head poller.
    poll_cancel: CancellationToken,
    /// What ingest is doing (for `health`).
    ingest_state: Arc<std::sync::Mutex<IngestState>>,
    /// Stops the telemetry writer (last, after it drained).
    telemetry_cancel: CancellationToken,
    progress: bool,
    /// Set when a broker sink stopped for good (a backfill stops waiting for it).
    sink_stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl App {
    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Open the store, build the fleet, check chain ids, start the telemetry writer.
    pub async fn start(opts: AppOptions) -> Result<Self, AppError> {
        let config = opts.config;
        let env = |k: &str| std::env::var(k).ok();
        // Everything from the environment is checked before the file is created or opened.
        config.check_env(env)?;
        let providers = config.resolve(env)?;
        let index = Arc::new(Indexing::from_config(&config.index, config.receipts_enabled())?);
        let mut store_opts = StoreOptions::new(&opts.db);
        store_opts.synchronous_full = config.synchronous_full;
        store_opts.max_size_bytes = config.max_db_size_mb.map(|mb| mb.saturating_mul(1 << 20));
        let store = Store::open(&store_opts).await?;
        let (telemetry, rx) = if config.telemetry {
            let (s, rx) = TelemetrySink::new(1 << 16);
            (s, Some(rx))
        } else {
            (TelemetrySink::disabled(), None)
        };
        let mut built = Vec::with_capacity(providers.len());
        let mut names = Vec::with_capacity(providers.len());
        for (i, rp) in providers.into_iter().enumerate() {
            let id = ProviderId(u16::try_from(i).map_err(|_| AppError::Other("more than 65535 providers".into()))?);
            let name = rp.name;
            let mut spec = ProviderSpec::new(name.clone(), SecretUrl::new(rp.url));
            spec.ws_url = rp.ws_url.map(SecretUrl::new);
            let pc = config.providers.get(i);
            if let Some(ms) = pc.and_then(|p| p.timeout_ms) {
                spec.block_timeout = Duration::from_millis(ms);
                spec.head_timeout = Duration::from_millis(ms).min(spec.head_timeout);
            }
            let mut policy = ProviderPolicy::default();
            if let Some(p) = pc {
                spec.credits = CreditPrices::new(p.credits.clone());
                policy.tier = p.tier;
                policy.weight = p.weight.unwrap_or(policy.weight);
                policy.max_rps = p.max_rps;
                policy.burst = p.burst.unwrap_or_else(|| burst_for(p.max_rps));
                policy.max_concurrency = p.max_concurrency.unwrap_or(policy.max_concurrency);
                policy.price_per_million = p.price_per_million_credits.unwrap_or(0.0);
                policy.daily_credit_budget = p.daily_credit_budget;
                policy.monthly_credit_budget = p.monthly_credit_budget;
                policy.poll_interval = p.poll_interval_ms.map(Duration::from_millis);
            }
            names.push((id, name, spec.url.redacted()));
            built.push((Arc::new(Provider::new(id, spec, telemetry.clone())?), policy));
        }
        store.register_providers(&names).await?;
        let known: Vec<(ProviderId, &str)> = names.iter().map(|(id, n, _)| (*id, n.as_str())).collect();
        for r in store.learned_capabilities(&known).await? {
            if let Some((p, _)) = built.get(r.provider.position()) {
                p.assume(&r);
            }
        }
        // Readers of the file (`serve`, `export`) judge finality by the writer's setting.
        store.set_meta("confirmations", crate::types::to_sql("confirmations", config.confirmations)?).await?;
        let decode_backfills = store.use_indexing(&index).await?;
        let writer_tasks = TaskTracker::new();
        let telemetry_cancel = CancellationToken::new();
        if let Some(rx) = rx {
            let writer = TelemetryWriter::new(store.clone(), rx);
            let c = telemetry_cancel.clone();
            writer_tasks.spawn(async move {
                let stats = writer.run(c).await;
                if stats.failed_batches > 0 {
                    tracing::warn!(?stats, "telemetry writer stopped; some batches were not written");
                } else {
                    tracing::debug!(?stats, "telemetry writer stopped");
                }
            });
        }
        let mut fleet_opts = FleetOptions::from_routing(
            &config.routing,
            DecodeOptions {
                full_transactions: config.full_transactions,
                verify_header_hash: config.verify_header_hash,
                keep_raw: config.index.raw_json,
            },
        );
        fleet_opts.heads = HeadOptions::from_config(&config);
        let fleet = Arc::new(Fleet::new(built, fleet_opts, telemetry.clone())?);
        // Budgets survive restarts: count what the telemetry says was already spent.
        let (day, month) = Fleet::budget_periods(crate::types::now_ms());
        let today = store.credits_since(day).await?;
        for (id, month_credits) in store.credits_since(month).await? {
            let day_credits = today.iter().find(|(i, _)| *i == id).map_or(0, |(_, c)| *c);
            fleet.seed_spend(id, day_credits, month_credits)?;
        }
        for p in fleet.providers() {
            tracing::info!(provider = p.name(), url = %p.url_redacted(), "provider configured");
        }
        let workers = TaskTracker::new();
        let poll_cancel = CancellationToken::new();
        if !decode_backfills.is_empty() {
            workers.spawn(decode_stored_logs(store.clone(), index.clone(), decode_backfills, poll_cancel.clone()));
        }
        Ok(Self {
            store,
            fleet,
            telemetry,
            config,
            index,
            workers,
            writer: writer_tasks,
            poll_cancel,
            ingest_state: Arc::default(),
            telemetry_cancel,
            progress: opts.progress,
            sink_stopped: Arc::default(),
        })
    }

    /// Verify chain ids and pin the chain id in the file. The chain is the configured
    /// `chain_id`, else the one the file already holds, else the one a strict majority of the
    /// answering providers serve. While no provider answers, retry with backoff for
    /// `startup_timeout_ms`, then fail naming each provider's last error.
    pub async fn check_chain(&self, cancel: &CancellationToken) -> Result<u64, AppError> {
        let stored = match self.store.meta("chain_id").await? {
            Some(v) => Some(crate::types::from_sql("chain id", v)?),
            None => None,
        };
        let configured = self.config.expected_chain_id();
        if let (Some(c), Some(s)) = (configured, stored)
            && c != s
        {
            let db = self.store.path().display().to_string();
            return Err(AppError::ChainMismatch { db, stored: s, served: format!("{c} (configured chain_id)") });
        }
        let expected = configured.or(stored);
        let started = Instant::now();
        let timeout = Duration::from_millis(self.config.startup_timeout_ms);
        let mut wait = Duration::from_millis(250);
        let chain = loop {
            match self.fleet.verify_chain(expected).await {
                Ok(c) => break c,
                Err(FleetError::NoChainId { errors }) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        return Err(AppError::Unreachable { waited_ms, errors: self.last_errors(&errors) });
                    }
                    tracing::warn!(retry_in = ?wait, %errors, "no provider answered eth_chainId yet");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(FleetError::Cancelled.into()),
                        () = tokio::time::sleep(wait.min(left)) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(FleetError::WrongChain { expected, seen }) if stored == Some(expected) => {
                    let db = self.store.path().display().to_string();
                    return Err(AppError::ChainMismatch { db, stored: expected, served: seen });
                }
                Err(e) => return Err(e.into()),
            }
        };
        if stored.is_none() {
            let served = crate::types::to_sql("chain id", chain)?;
            self.store.set_meta("chain_id", served).await?;
        }
        tracing::info!(chain_id = chain, "chain id verified");
        Ok(chain)
    }

    /// Every provider's last error, for a start-up failure (`fallback` when none was recorded).
    fn last_errors(&self, fallback: &str) -> String {
        let each: Vec<String> = self
            .fleet
            .last_errors()
            .into_iter()
            .map(|(name, e)| format!("{name}: {}", e.as_deref().unwrap_or("no answer")))
            .collect();
        if each.is_empty() { fallback.to_string() } else { each.join("; ") }
    }

    /// Start polling heads in the background.
    pub fn start_head_poller(&self) {
        let fleet = self.fleet.clone();
        let c = self.poll_cancel.clone();
        self.workers.spawn(fleet.run_head_poller(c));
    }

    /// Keep the WAL small: every 2 s, if it passed 1 MiB, try a TRUNCATE checkpoint that never
    /// waits (a long reader just makes it try again later).
    pub fn start_wal_trimmer(&self) {
        let store = self.store.clone();
        let cancel = self.poll_cancel.clone();
        self.workers.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if let Err(e) = store.trim_wal(1 << 20).await {
                    tracing::debug!(error = %e, "WAL checkpoint skipped");
                }
            }
        });
    }

    /// Apply telemetry retention a minute after start and then every 10 minutes, in small
    /// batches (see `Store::prune_telemetry`).
    pub fn start_retention(&self) {
        let store = self.store.clone();
        let cancel = self.poll_cancel.clone();
        let (raw_days, rollup_days) = (self.config.retention.raw_days, self.config.retention.rollup_days);
        self.workers.spawn(async move {
            let mut wait = Duration::from_secs(60);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = Duration::from_secs(600);
                match store.prune_telemetry(crate::types::now_ms(), raw_days, rollup_days).await {
                    Ok(r) if r.raw_requests + r.rollup_rows + r.sightings + r.events > 0 => tracing::info!(
                        raw_requests = r.raw_requests,
                        rollup_rows = r.rollup_rows,
                        sightings = r.sightings,
                        events = r.events,
                        "telemetry retention applied"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "telemetry retention failed; will retry"),
                }
            }
        });
    }

    /// Start the gap-repair worker in the background (stopped with the head poller).
    pub fn start_gap_repair(&self) {
        let opts = RepairOptions::from_config(&self.config, self.index.clone());
        let worker = GapRepairer::new(self.fleet.clone(), self.store.clone(), opts);
        self.workers.spawn(worker.run(self.poll_cancel.clone()));
    }

    fn ingest_options(&self) -> IngestOptions {
        IngestOptions::from_config(&self.config, self.index.clone())
    }

    fn window_cap(&self) -> usize {
        usize::try_from(self.config.max_reorg_depth).unwrap_or(usize::MAX / 2).saturating_add(1)
    }

    /// Follow the head until `cancel`; resume from the stored tip, or start at `from_block`
    /// (default: the current fleet head) on an empty database.
    pub async fn follow(&self, from_block: Option<u64>, cancel: &CancellationToken) -> Result<(), AppError> {
        let chain = self.check_chain(cancel).await?;
        self.start_head_poller();
        self.start_sinks(chain).await?;
        let cap = self.window_cap();
        let links = self.store.recent_canonical(cap as u64).await?;
        let start = match (links.last(), from_block) {
            (Some(tip), from) => {
                if let Some(f) = from
                    && f > tip.number + 1
                {
                    tracing::warn!(
                        from_block = f,
                        stored_tip = tip.number,
                        "--from-block is above the stored tip; resuming at the stored tip so no hole is left"
                    );
                }
                tracing::info!(tip = tip.number, "resuming from the stored tip");
                tip.number + 1
            }
            (None, Some(f)) => f,
            (None, None) => {
                let mut heads = self.fleet.subscribe_head();
                let h = loop {
                    if let Some(h) = *heads.borrow_and_update() {
                        break h;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        r = heads.changed() => if r.is_err() { return Ok(()) },
                    }
                };
                tracing::info!(head = h.number, "empty database: starting at the fleet head");
                h.number
            }
        };
        // `links` are the newest `cap` canonical blocks: if there are fewer, nothing is stored
        // below the oldest, so a reorg may reach under it.
        let window = Window::seed(links, cap, false, start);
        if self.config.gap_repair {
            self.start_gap_repair();
        }
        self.start_wal_trimmer();
        self.start_retention();
        let mut syncer = Syncer::new(self.fleet.clone(), self.store.clone(), window, self.ingest_options())
            .with_state(self.ingest_state.clone());
        syncer.follow(cancel).await?;
        Ok(())
    }

    /// Fetch and store heights `from..=to`, skipping the stored prefix of the range. One span
    /// (`backfill`, with `from` and `to`) holds every fetch and commit of it: one trace.
    #[tracing::instrument(name = "backfill", skip(self, cancel))]
    pub async fn backfill(&self, from: u64, to: u64, cancel: &CancellationToken) -> Result<BackfillReport, AppError> {
        if from > to {
            return Err(AppError::Other(format!("--from {from} is above --to {to}")));
        }
        let begun = std::time::Instant::now();
        let chain = self.check_chain(cancel).await?;
        let sink_started = (std::time::Instant::now(), self.sink_messages().await?);
        self.start_sinks(chain).await?;
        self.start_head_poller();
        // Wait for a head so selection knows who can serve the top of the range.
        let mut heads = self.fleet.subscribe_head();
        self.fleet.poll_heads_once().await;
        self.wait_for_head(to, &mut heads, cancel).await?;
        let cap = self.window_cap();
        let start = self.store.first_missing_from(from, to).await?;
        let Some(start) = start else {
            tracing::info!(from, to, "range already stored");
            return Ok(BackfillReport { from, to, fetched: 0 });
        };
        let links = self.store.canonical_below(start, cap as u64).await?;
        let contiguous = links.last().is_some_and(|l| l.number + 1 == start);
        let window = if contiguous {
            Window::seed(links, cap, true, start)
        } else {
            Window::seed(Vec::new(), cap, false, start)
        };
        let mut syncer = Syncer::new(self.fleet.clone(), self.store.clone(), window, self.ingest_options());
        if self.progress {
            let bar = indicatif::ProgressBar::new(to - start + 1);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} blocks ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            syncer = syncer.with_progress(bar);
        }
        // A backfill only appends: its commits go through the bulk connection (rusqlite, no
        // copies of every value). Large ranges also load faster without the random-keyed hash
        // indexes; they are rebuilt once, sorted, at the end (or at the next start if this
        // process dies first): `Store::begin_bulk_load_of` says when that pays.
        let bulk = self.config.full_transactions;
        let blocks = to - start + 1;
        let drop_indexes = bulk && self.store.begin_bulk_load_of(blocks, self.config.bulk_load_min_blocks).await?;
        if drop_indexes {
            tracing::info!(blocks, "bulk load: hash indexes are rebuilt after the backfill");
        }
        let res = syncer.sync_to(to, cancel).await;
        if bulk {
            let t = std::time::Instant::now();
            match self.store.end_bulk_load().await {
                Ok(()) if drop_indexes => {
                    let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(ms, "hash indexes rebuilt");
                }
                Ok(()) => {}
                // The backfill's own error is the one to report (a full disk fails the rebuild
                // too); the index is rebuilt by the next bulk load's end or the next start.
                Err(e) if res.is_err() => {
                    tracing::warn!(error = %e, "tx-hash index not rebuilt after the failed backfill; the next start rebuilds it");
                }
                Err(e) => return Err(e.into()),
            }
        }
        res?;
        self.store.checkpoint().await?;
        if self.config.sink.nats.is_some() {
            let seconds = format!("{:.2}", begun.elapsed().as_secs_f64());
            tracing::info!(seconds, "backfill stored; waiting for the sink");
        }
        self.drain_sinks(sink_started, cancel).await?;
        Ok(BackfillReport { from, to, fetched: to - start + 1 })
    }

    /// Wait until the fleet head reaches `to`: said once, then progress every 10 s (the head,
    /// and how many blocks are still to come).
    async fn wait_for_head(
        &self,
        to: u64,
        heads: &mut tokio::sync::watch::Receiver<Option<crate::fleet::FleetHead>>,
        cancel: &CancellationToken,
    ) -> Result<(), AppError> {
        let head = |h: Option<crate::fleet::FleetHead>| h.map(|h| h.number);
        if heads.borrow_and_update().is_some_and(|h| h.number >= to) {
            return Ok(());
        }
        let at = head(*heads.borrow());
        tracing::info!(to, head = at, "waiting for a provider to report a head at or above --to");
        let mut note =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(10), Duration::from_secs(10));
        loop {
            if heads.borrow_and_update().is_some_and(|h| h.number >= to) {
                return Ok(());
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(IngestError::Cancelled.into()),
                r = heads.changed() => if r.is_err() { return Err(IngestError::Cancelled.into()) },
                _ = note.tick() => {
                    let at = head(*heads.borrow());
                    let to_go = at.map(|h| to.saturating_sub(h));
                    tracing::info!(to, head = at, blocks_to_go = to_go, "still waiting for the chain to reach --to");
                }
            }
        }
    }

    /// One word for the whole process, with the reason: `ok`; `degraded` (no provider can
    /// serve, or ingest steps keep failing); `storage_full`; `reorg_too_deep` (ingest stopped).
    pub fn health(&self) -> (HealthState, String) {
        health_of(&self.fleet, &self.ingest_state)
    }

    /// `health` as a shareable function (for the API).
    pub fn health_fn(&self) -> crate::api::HealthFn {
        let fleet = self.fleet.clone();
        let state = self.ingest_state.clone();
        Arc::new(move || health_of(&fleet, &state))
    }

    /// Start the HTTP API (when `[api] enabled`) on `listen` (default: `[api] listen`) and the
    /// alert evaluator (when `[alerts] enabled`). The API stops with `cancel` or `ApiServer::stop`.
    pub async fn start_api(
        &self,
        listen: Option<std::net::SocketAddr>,
        cancel: &CancellationToken,
    ) -> Result<Option<crate::api::ApiServer>, AppError> {
        let env = |k: &str| std::env::var(k).ok();
        if self.config.alerts.enabled {
            let webhook = self.config.webhook_url(env)?;
            let ev = crate::api::alerts::Evaluator::new(
                self.store.clone(),
                Some(self.fleet.clone()),
                self.config.alerts.clone(),
                webhook,
            )
            .map_err(AppError::Other)?;
            self.workers.spawn(ev.run(self.poll_cancel.clone()));
        }
        if !self.config.api.enabled {
            return Ok(None);
        }
        let addr = match listen {
            Some(a) => a,
            None => self.config.api_listen()?,
        };
        let opts = crate::api::ApiOptions::resolve(&self.config, env)?;
        let live =
            crate::api::Live { fleet: self.fleet.clone(), health: self.health_fn(), telemetry: self.telemetry.clone() };
        let state = crate::api::ApiState::new(self.store.clone(), Some(live), opts);
        let server =
            crate::api::ApiServer::start(addr, state, cancel).await.map_err(|e| AppError::Other(e.to_string()))?;
        Ok(Some(server))
    }

    /// Stop background tasks, drain telemetry, close the store.
    pub async fn shutdown(self) {
        // Stop the producers of telemetry first, so the writer can drain everything they queued.
        self.poll_cancel.cancel();
        self.workers.close();
        if tokio::time::timeout(Duration::from_secs(10), self.workers.wait()).await.is_err() {
            tracing::warn!("background tasks did not stop within 10 s");
        }
        self.telemetry_cancel.cancel();
        self.writer.close();
        if tokio::time::timeout(Duration::from_secs(10), self.writer.wait()).await.is_err() {
            tracing::warn!("telemetry writer did not stop within 10 s");
        }
        let dropped = self.telemetry.dropped();
        if dropped > 0 {
            tracing::warn!(dropped, "telemetry events dropped because the writer fell behind");
            let prev = self.store.meta("telemetry_dropped").await.ok().flatten().unwrap_or(0);
            let _ = self.store.set_meta("telemetry_dropped", prev + i64::try_from(dropped).unwrap_or(i64::MAX)).await;
        }
        self.store.close().await;
    }
}

fn health_of(fleet: &Fleet, ingest_state: &std::sync::Mutex<IngestState>) -> (HealthState, String) {
    let ingest = ingest_state.lock().map(|g| g.clone()).unwrap_or_default();
    match ingest {
        IngestState::ReorgTooDeep { number } => {
            return (HealthState::ReorgTooDeep, format!("block {number} does not link within max_reorg_depth"));
        }
        IngestState::StorageFull => return (HealthState::StorageFull, "commits fail: the database is full".into()),
        _ => {}
    }
    let status = fleet.status();
    // Usable: breaker closed and not excluded (a half-open probe is not yet a provider).
    let usable = status.iter().filter(|p| p.breaker == crate::fleet::Breaker::Closed && p.state.serving()).count();
    if usable == 0 {
        return (HealthState::Degraded, format!("none of {} providers can serve", status.len()));
    }
    if let IngestState::Stalled(why) = ingest {
        return (HealthState::Degraded, why);
    }
    (HealthState::Ok, String::new())
}

/// What a backfill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    pub from: u64,
    pub to: u64,
    /// Heights fetched (the stored prefix of the range is skipped).
    pub fetched: u64,
}

/// Default burst for a rate: one second's worth, at least 1.
fn burst_for(max_rps: Option<f64>) -> u32 {
    max_rps.map_or(10, |r| {
        let mut b = 1u32;
        while f64::from(b) < r && b < 10_000 {
            b += 1;
        }
        b
    })
}

/// Heights decoded from stored logs per transaction of a decode backfill.
const DECODE_CHUNK: u64 = 5_000;

/// Decode the stored logs of tables made after those logs were stored, a chunk per
/// transaction, resuming where a previous run stopped (the cursor is in `event_tables`).
async fn decode_stored_logs(store: Store, index: Arc<Indexing>, jobs: Vec<DecodeBackfill>, cancel: CancellationToken) {
    for job in jobs {
        let name = index.tables.get(usize::from(job.table)).map_or("?", |t| t.name.as_str()).to_string();
        let (mut rows, mut errors) = (0u64, 0u64);
        let mut from = job.from;
        while from <= job.until && !cancel.is_cancelled() {
            let to = from.saturating_add(DECODE_CHUNK - 1).min(job.until);
            match store.decode_stored(&index, job.table, from, to, to == job.until).await {
                Ok((r, e)) => {
                    rows += r;
                    errors += e;
                }
                Err(e) => {
                    tracing::warn!(table = %name, from, to, error = %e, "decoding stored logs failed; retried at the next start");
                    return;
                }
            }
            from = to + 1;
        }
        tracing::info!(table = %name, rows, errors, from = job.from, until = job.until, "stored logs decoded into a new table");
    }
}
