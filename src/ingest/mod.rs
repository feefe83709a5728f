//! Ingest: follow the fleet head, append blocks only onto their parents, walk back through
//! reorgs to the fork point, and backfill ranges with pipelined, batched fetches.

pub mod enrich;
pub mod repair;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

pub use window::Window;

use crate::fleet::{Fleet, FleetError, FleetHead};
use crate::index::Indexing;
use crate::model::{Block, BlockSink, ChainLink, CommitBatch, IngestState, Reorg};
use crate::types::now_ms;

fn sink_error<S: BlockSink>(e: S::Error) -> IngestError {
    if S::is_storage_full(&e) { IngestError::StorageFull(Box::new(e)) } else { IngestError::Sink(Box::new(e)) }
}

/// Why ingest stopped or a step failed.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("commit failed")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("storage is full; ingest pauses until space is freed")]
    StorageFull(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "reorg deeper than max_reorg_depth = {limit}: block {number} ({hash}) does not link to \
         the stored chain within {limit} blocks; refusing to rewrite history. Inspect the \
         providers, then raise max_reorg_depth or re-sync from an earlier height"
    )]
    DeepReorg { limit: u64, number: u64, hash: alloy_primitives::B256 },
    #[error("the genesis block differs from the stored one: wrong chain or wrong database")]
    GenesisMismatch,
    #[error("a fetch task failed: {0}")]
    Task(String),
    #[error("the parent of block {child} came back as block {got}; the provider is inconsistent")]
    BadParent { child: u64, got: u64 },
    #[error("cancelled")]
    Cancelled,
}

impl IngestError {
    /// Errors that must stop ingest rather than be retried.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::DeepReorg { .. } | Self::GenesisMismatch)
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub max_reorg_depth: u64,
    /// Blocks per fetch (one JSON-RPC batch).
    pub batch_size: usize,
    /// Fetches in flight.
    pub concurrency: usize,
    /// Most blocks per SQLite transaction.
    pub commit_blocks: usize,
    /// Most rows (transactions, receipts, logs, decoded events) per SQLite transaction: bounds
    /// the memory fetched blocks hold while they wait, whatever their shape.
    pub commit_rows: usize,
    /// Longest time fetched blocks wait before being committed.
    pub commit_interval: Duration,
    /// How often to look at the head when no head update arrived.
    pub poll_interval: Duration,
    /// Following, a catch-up of at least this many blocks goes through the sink's bulk path
    /// (None: never).
    pub catch_up_bulk_min: Option<u64>,
    /// …and rebuilds the hash indexes at its end when it is at least this long.
    pub bulk_rebuild_min: u64,
    /// What is indexed besides blocks: receipts, the log selection, decoded tables.
    pub index: Arc<Indexing>,
}

impl IngestOptions {
    /// From the configuration (the one place the defaults are written down) and its checked
    /// `[index]` section.
    pub fn from_config(c: &crate::config::Config, index: Arc<Indexing>) -> Self {
        Self {
            max_reorg_depth: c.max_reorg_depth,
            batch_size: c.batch_size,
            concurrency: c.concurrency,
            commit_blocks: 1000,
            commit_rows: 10_000,
            commit_interval: Duration::from_millis(250),
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            // The bulk connection writes full blocks only (as `backfill`).
            catch_up_bulk_min: c.full_transactions.then_some(c.catch_up_bulk_min_blocks),
            bulk_rebuild_min: c.bulk_load_min_blocks,
            index,
        }
    }
}

impl Default for IngestOptions {
    /// The defaults, indexing nothing but blocks.
    fn default() -> Self {
        Self::from_config(&crate::config::Config::default(), Arc::default())
    }
}

/// Blocks of a commit a spot check may choose from.
const AUDIT_CANDIDATES: usize = 16;

/// The rows `b` adds to a commit (a block counts one).
fn rows_of(b: &Block) -> usize {
    let receipts = b.receipts.as_ref().map_or(0, |r| r.receipts.len());
    1 + b.transactions.len() + receipts + b.all_logs().count() + b.decoded.len()
}

/// A commit running in the background while the next batch is fetched.
#[derive(Debug)]
struct PendingCommit<E> {
    handle: AbortOnDropHandle<Result<(), E>>,
    first: u64,
    tip: u64,
    blocks: usize,
    started: Instant,
}

/// Fetches, checks links, and commits through a `BlockSink`.
///
/// Appends are pipelined: one commit may run while the next batch is fetched and checked. The
/// in-memory window runs ahead of the store by at most that one batch, and is rolled back to
/// the last acknowledged tip if the commit fails.
#[derive(Debug)]
pub struct Syncer<S: BlockSink> {
    fleet: Arc<Fleet>,
    sink: S,
    window: Window,
    opts: IngestOptions,
    progress: Option<indicatif::ProgressBar>,
    in_flight: Option<PendingCommit<S::Error>>,
    state: Option<Arc<std::sync::Mutex<IngestState>>>,
    /// When the last spot check of another provider's receipts started.
    last_audit: Option<Instant>,
    /// The newest committed blocks with verified receipts, for spot checks.
    audit_pool: std::collections::VecDeque<Arc<Block>>,
}

impl<S: BlockSink + Clone + 'static> Syncer<S> {
    /// A syncer that continues from `window` (seeded by the composition root from the store).
    pub fn new(fleet: Arc<Fleet>, sink: S, window: Window, opts: IngestOptions) -> Self {
        Self {
            fleet,
            sink,
            window,
            opts,
            progress: None,
            in_flight: None,
            state: None,
            last_audit: None,
            audit_pool: std::collections::VecDeque::new(),
        }
    }

    /// Report what ingest is doing into `state` (read by health checks).
    pub fn with_state(mut self, state: Arc<std::sync::Mutex<IngestState>>) -> Self {
        self.state = Some(state);
        self
    }

    fn set_state(&self, s: IngestState) {
        if let Some(st) = &self.state
            && let Ok(mut g) = st.lock()
            && *g != s
        {
            *g = s;
        }
    }

    /// Show progress on this bar (backfill on a terminal).
    pub fn with_progress(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress = Some(bar);
        self
    }

    /// The newest committed canonical link.
    pub fn tip(&self) -> Option<ChainLink> {
        self.window.tip()
    }

    fn acknowledge(&self, tip: u64, blocks: usize, started: Instant) {
        // Stable line: the crash tests read `committed tip=N` as the acknowledgement.
        let commit_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(tip, blocks, commit_ms, "committed");
        // A durable commit is the proof ingest works again (storage freed, providers back).
        self.set_state(IngestState::Following);
        if let Some(p) = &self.progress {
            p.inc(blocks as u64);
        }
    }

    /// Wait for the background commit, if any; on failure roll the window back.
    async fn settle(&mut self) -> Result<(), IngestError> {
        let Some(c) = self.in_flight.take() else { return Ok(()) };
        let res = match c.handle.await {
            Ok(r) => r.map_err(sink_error::<S>),
            Err(join) => Err(IngestError::Sink(Box::new(join))),
        };
        match res {
            Ok(()) => {
                self.acknowledge(c.tip, c.blocks, c.started);
                Ok(())
            }
            Err(e) => {
                self.window.truncate_above(c.first.saturating_sub(1));
                Err(e)
            }
        }
    }

    /// Commit synchronously (reorgs), after any background commit.
    #[tracing::instrument(name = "commit", skip_all, fields(blocks = batch.blocks.len()))]
    async fn commit(&mut self, batch: CommitBatch) -> Result<(), IngestError> {
        self.settle().await?;
        let n = batch.blocks.len();
        let tip = batch.blocks.last().map(|b| b.number);
        let started = Instant::now();
        self.sink.commit(batch).await.map_err(sink_error::<S>)?;
        if let Some(tip) = tip {
            self.acknowledge(tip, n, started);
        }
        Ok(())
    }

    /// Start committing `pending` in the background (after the previous commit finished).
    #[tracing::instrument(name = "commit", skip_all, fields(blocks = pending.len()))]
    async fn flush(&mut self, pending: &mut Vec<Block>) -> Result<(), IngestError> {
        self.settle().await?;
        let (Some(first), Some(tip)) = (pending.first().map(|b| b.number), pending.last().map(|b| b.number)) else {
            return Ok(());
        };
        let blocks = std::mem::take(pending);
        self.maybe_audit(&blocks);
        let n = blocks.len();
        let sink = self.sink.clone();
        // The commit runs in the background but inside this span, so traces show its length.
        let commit = async move { sink.commit(CommitBatch { reorg: None, blocks }).await };
        let handle = AbortOnDropHandle::new(tokio::spawn(commit.in_current_span()));
        self.in_flight = Some(PendingCommit { handle, first, tip, blocks: n, started: Instant::now() });
        Ok(())
    }

    /// Every `[index] audit_secs`, spot-check the receipts of one of the newest blocks of
    /// `blocks` with verified receipts on another provider, in the background (the fleet records the
    /// outcome: telemetry, and a penalty for a forged answer).
    fn maybe_audit(&mut self, blocks: &[Block]) {
        let Some(every) = self.opts.index.audit else { return };
        let verified =
            |b: &&Block| b.tx_count > 0 && b.receipts.as_ref().is_some_and(|r| r.root_verified == Some(true));
        // The newest few committed, across commits: each provider is asked for the newest one it
        // has reported (at the tip a commit holds one block, which others may not have seen yet).
        let fresh: Vec<&Block> = blocks.iter().rev().filter(verified).take(AUDIT_CANDIDATES).collect();
        for b in fresh.into_iter().rev() {
            self.audit_pool.push_back(Arc::new(b.clone()));
        }
        while self.audit_pool.len() > AUDIT_CANDIDATES {
            self.audit_pool.pop_front();
        }
        if self.audit_pool.is_empty() || self.last_audit.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        let picked: Vec<Arc<Block>> = self.audit_pool.iter().cloned().collect();
        self.last_audit = Some(Instant::now());
        let fleet = self.fleet.clone();
        tokio::spawn(async move { fleet.audit_receipts(&picked).await }.in_current_span());
    }

    /// Fetch and commit every height from the window's next number up to `target`.
    pub async fn sync_to(&mut self, target: u64, cancel: &CancellationToken) -> Result<(), IngestError> {
        loop {
            let start = self.window.next_number();
            if start > target {
                return Ok(());
            }
            match self.sync_pass(start, target, cancel).await? {
                Pass::Done => return Ok(()),
                Pass::Restart => continue,
            }
        }
    }

    async fn sync_pass(&mut self, start: u64, target: u64, cancel: &CancellationToken) -> Result<Pass, IngestError> {
        let batch = self.opts.batch_size.max(1) as u64;
        let chunks = (start..=target).step_by(usize::try_from(batch).unwrap_or(1)).map(move |a| {
            let b = a.saturating_add(batch - 1).min(target);
            (a..=b).collect::<Vec<u64>>()
        });
        let fleet = self.fleet.clone();
        let index = self.opts.index.clone();
        let concurrency = self.opts.concurrency.max(1);
        // Results are consumed in height order, but a slow chunk must not idle the others: up
        // to 2× `concurrency` chunks are queued, and a semaphore keeps `concurrency` of them on
        // the wire, so a finished chunk waiting behind a slow one frees its slot. (4× held a
        // quarter more blocks in memory against a fast provider for no throughput: BENCHMARKS §7.)
        let on_wire = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut stream = futures::stream::iter(chunks)
            .map(move |numbers| {
                let fleet = fleet.clone();
                let index = index.clone();
                let on_wire = on_wire.clone();
                // Spawned so fetches keep running while a commit is awaited; aborted if dropped.
                // In the caller's span (backfill, follow), so each fetch is its child in a trace.
                AbortOnDropHandle::new(tokio::spawn(
                    async move {
                        let _slot = on_wire.acquire_owned().await;
                        let mut blocks = fleet.blocks_by_number(&numbers).await?;
                        enrich::enrich(&fleet, &index, &mut blocks).await?;
                        Ok::<_, FleetError>(blocks)
                    }
                    .in_current_span(),
                ))
            })
            .buffered(concurrency * 2);
        let mut pending: Vec<Block> = Vec::new();
        let mut pending_rows = 0usize;
        let mut last_commit = Instant::now();
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => {
                    self.flush(&mut pending).await?;
                    self.settle().await?;
                    return Err(IngestError::Cancelled);
                }
                n = stream.next() => n,
            };
            let Some(joined) = next else { break };
            let fetched = match joined {
                Ok(Ok(blocks)) => blocks,
                Ok(Err(e)) => {
                    self.flush(&mut pending).await?;
                    self.settle().await?;
                    return Err(e.into());
                }
                Err(join) => {
                    self.flush(&mut pending).await?;
                    self.settle().await?;
                    return Err(IngestError::Task(join.to_string()));
                }
            };
            for b in fetched {
                if self.window.extends(b.number, b.parent_hash) {
                    self.window.push(ChainLink { number: b.number, hash: b.hash });
                    pending_rows += rows_of(&b);
                    pending.push(b);
                } else {
                    // The chain moved under us: commit what linked, then resolve the fork.
                    drop(stream);
                    self.flush(&mut pending).await?;
                    self.settle().await?;
                    self.resolve_reorg(b).await?;
                    return Ok(Pass::Restart);
                }
            }
            if pending.len() >= self.opts.commit_blocks
                || pending_rows >= self.opts.commit_rows
                || last_commit.elapsed() >= self.opts.commit_interval
            {
                self.flush(&mut pending).await?;
                pending_rows = 0;
                last_commit = Instant::now();
            }
        }
        self.flush(&mut pending).await?;
        self.settle().await?;
        Ok(Pass::Done)
    }

    /// `new_block` does not extend the stored tip: walk back by parent hash until the branch
    /// meets the stored chain, then replace the old branch above the fork in one transaction.
    #[tracing::instrument(name = "reorg", skip_all, fields(height = new_block.number))]
    pub async fn resolve_reorg(&mut self, new_block: Block) -> Result<(), IngestError> {
        let limit = self.opts.max_reorg_depth;
        let provider = new_block.provider;
        let mut branch = vec![new_block];
        let fork = loop {
            let Some(b) = branch.last() else {
                return Ok(());
            };
            if b.number == 0 {
                return Err(IngestError::GenesisMismatch);
            }
            let parent_number = b.number - 1;
            let parent_hash = b.parent_hash;
            let tip = self.window.tip();
            if tip.is_some_and(|t| parent_number <= t.number) {
                match self.window.hash_at(parent_number) {
                    Some(h) if h == parent_hash => {
                        break Some(ChainLink { number: parent_number, hash: h });
                    }
                    Some(_) => {}
                    None if self.window.floor_open() => break None,
                    None => {
                        return Err(IngestError::DeepReorg { limit, number: b.number, hash: b.hash });
                    }
                }
            }
            let depth_so_far = tip.map_or(0, |t| t.number.saturating_sub(parent_number));
            if depth_so_far > limit || branch.len() as u64 > limit.saturating_add(1) {
                return Err(IngestError::DeepReorg { limit, number: b.number, hash: b.hash });
            }
            let parent = self.fleet.block_by_hash(parent_hash).await?;
            if parent.number != parent_number {
                return Err(IngestError::BadParent { child: b.number, got: parent.number });
            }
            branch.push(parent);
        };
        branch.reverse();
        enrich::enrich(&self.fleet, &self.opts.index, &mut branch).await?;
        let Some(first) = branch.first() else {
            return Ok(());
        };
        let fork = fork.unwrap_or(ChainLink { number: first.number.saturating_sub(1), hash: first.parent_hash });
        let old_tip = self.window.tip().unwrap_or(fork);
        let Some(last) = branch.last() else {
            return Ok(());
        };
        let new_tip = ChainLink { number: last.number, hash: last.hash };
        let depth = old_tip.number.saturating_sub(fork.number);
        if depth > limit {
            return Err(IngestError::DeepReorg { limit, number: first.number, hash: first.hash });
        }
        let reorg = (depth > 0).then(|| Reorg { detected_at_ms: now_ms(), depth, fork, old_tip, new_tip, provider });
        if let Some(r) = &reorg {
            tracing::warn!(
                depth = r.depth, fork = r.fork.number, old_tip = %r.old_tip.hash, new_tip = %r.new_tip.hash,
                new_tip_number = r.new_tip.number, "reorg: replacing the old branch above the fork point"
            );
        }
        let before = self.window.clone();
        self.window.truncate_above(fork.number);
        for b in &branch {
            self.window.push(ChainLink { number: b.number, hash: b.hash });
        }
        if let Err(e) = self.commit(CommitBatch { reorg, blocks: branch }).await {
            self.window = before;
            return Err(e);
        }
        Ok(())
    }

    /// The fleet head disagrees with the stored block at a height we already have (a same-height
    /// or shortening reorg): fetch that head block and resolve from it.
    async fn check_head(&mut self, head: FleetHead) -> Result<(), IngestError> {
        // A head known by height only says nothing about branches.
        let Some(hash) = head.hash else { return Ok(()) };
        let Some(ours) = self.window.hash_at(head.number) else {
            return Ok(());
        };
        if ours == hash {
            return Ok(());
        }
        let block = self.fleet.block_by_hash(hash).await?;
        self.resolve_reorg(block).await
    }

    /// Sync to `target`; a long way behind (start-up, or after an outage), through the sink's
    /// bulk path, then back on the tip path: the window carries on from the last committed
    /// block, so no height is skipped between the two.
    async fn catch_up(&mut self, target: u64, cancel: &CancellationToken) -> Result<(), IngestError> {
        let behind = target.saturating_sub(self.window.next_number()).saturating_add(1);
        let bulk = match self.opts.catch_up_bulk_min {
            Some(min) if behind >= min => {
                self.sink.begin_catch_up(behind, self.opts.bulk_rebuild_min).await.map_err(sink_error::<S>)?
            }
            _ => false,
        };
        let res = self.sync_to(target, cancel).await;
        if bulk {
            match (self.sink.end_catch_up().await, &res) {
                (Err(e), Ok(())) => return Err(sink_error::<S>(e)),
                // The catch-up's own error is the one to report; the next open rebuilds indexes.
                (Err(e), Err(_)) => tracing::warn!(error = %e, "bulk path not closed cleanly after a failed catch-up"),
                (Ok(()), _) => {}
            }
        }
        res
    }

    /// Follow the fleet head until cancelled. Transient errors are logged and retried; fatal
    /// ones (deep reorg, wrong genesis) are returned.
    pub async fn follow(&mut self, cancel: &CancellationToken) -> Result<(), IngestError> {
        let mut heads = self.fleet.subscribe_head();
        let mut failures = 0u32;
        loop {
            let head = *heads.borrow_and_update();
            if let Some(head) = head {
                let step = if head.number >= self.window.next_number() {
                    self.catch_up(head.number, cancel).await
                } else {
                    self.check_head(head).await
                };
                match step {
                    Ok(()) => {
                        failures = 0;
                        self.set_state(IngestState::Following);
                    }
                    Err(IngestError::Cancelled) => return Ok(()),
                    Err(e) if e.is_fatal() => {
                        if let IngestError::DeepReorg { number, .. } = &e {
                            self.set_state(IngestState::ReorgTooDeep { number: *number });
                        }
                        return Err(e);
                    }
                    Err(e) => {
                        self.set_state(match &e {
                            IngestError::StorageFull(_) => IngestState::StorageFull,
                            other => IngestState::Stalled(other.to_string()),
                        });
                        failures += 1;
                        let wait = Duration::from_millis(200u64 << failures.min(5)).min(Duration::from_secs(5));
                        tracing::warn!(error = %e, retry_in = ?wait, "ingest step failed");
                        tokio::select! {
                            () = cancel.cancelled() => return Ok(()),
                            () = tokio::time::sleep(wait) => {}
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                r = heads.changed() => if r.is_err() { return Ok(()) },
                () = tokio::time::sleep(self.opts.poll_interval) => {}
            }
        }
    }
}

enum Pass {
    Done,
    Restart,
}
