//! The gap-repair worker: finds missing canonical heights and broken parent links in the store,
//! refetches them (preferring a provider other than the one whose answer failed), splices them
//! in, and logs every attempt. It works in small chunks, one at a time, so head following always
//! gets the writer and the providers first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::enrich::enrich;
use crate::fleet::Fleet;
use crate::index::Indexing;
use crate::model::{Block, ProviderId, RepairOutcome, RepairReason, RepairRecord, RepairResult, RepairSink};
use crate::types::now_ms;

/// Tunables.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// Time between scans when nothing is open.
    pub interval: Duration,
    /// Most heights fetched and spliced per step.
    pub chunk: u64,
    /// Heights this close to the stored tip belong to reorg handling, not to repair.
    pub protect_top: u64,
    /// Furthest a broken link is widened (each side) before it is reported as failed.
    pub max_window: u64,
    /// What is indexed: repaired blocks get their receipts or logs, and blocks stored without
    /// them are gaps.
    pub index: Arc<Indexing>,
}

impl RepairOptions {
    /// From the configuration: heights within `max_reorg_depth` of the tip are ingest's.
    pub fn from_config(c: &crate::config::Config, index: Arc<Indexing>) -> Self {
        Self { interval: Duration::from_secs(2), chunk: 50, protect_top: c.max_reorg_depth, max_window: 64, index }
    }
}

impl Default for RepairOptions {
    fn default() -> Self {
        Self::from_config(&crate::config::Config::default(), Arc::default())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairPass {
    pub open: usize,
    pub repaired: usize,
    pub failed: usize,
}

/// The worker.
#[derive(Debug)]
pub struct GapRepairer<S> {
    fleet: Arc<Fleet>,
    sink: S,
    opts: RepairOptions,
    /// When each open problem (keyed by its first height) was first seen.
    detected: HashMap<u64, i64>,
    /// Provider whose answer failed last for a problem: asked last next time.
    avoid: HashMap<u64, ProviderId>,
    /// Current half-width of the window around each broken link.
    widths: HashMap<u64, u64>,
}

impl<S: RepairSink> GapRepairer<S> {
    pub fn new(fleet: Arc<Fleet>, sink: S, opts: RepairOptions) -> Self {
        Self { fleet, sink, opts, detected: HashMap::new(), avoid: HashMap::new(), widths: HashMap::new() }
    }

    /// Scan and repair until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let pass = tokio::select! {
                () = cancel.cancelled() => return,
                p = self.repair_once() => p,
            };
            let wait = match pass {
                Ok(p) if p.open > 0 => {
                    tracing::info!(open = p.open, repaired = p.repaired, failed = p.failed, "gap repair pass");
                    // Something is still open: come back soon, but let ingest breathe.
                    Duration::from_millis(200)
                }
                Ok(_) => self.opts.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "gap scan failed");
                    self.opts.interval
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One scan and one step of repair for each open problem.
    #[tracing::instrument(name = "repair", skip_all)]
    pub async fn repair_once(&mut self) -> Result<RepairPass, S::Error> {
        let scan = self.sink.scan_gaps().await?;
        let (Some(floor), Some(tip)) = (scan.floor, scan.tip) else { return Ok(RepairPass::default()) };
        let now = now_ms();
        let receipt_gaps: &[(u64, u64)] = if self.opts.index.stores_logs() { &scan.missing_receipts } else { &[] };
        let keys: Vec<u64> = scan
            .missing
            .iter()
            .map(|(a, _)| *a)
            .chain(scan.broken_links.iter().copied())
            .chain(receipt_gaps.iter().map(|(a, _)| *a))
            .collect();
        self.detected.retain(|k, _| keys.contains(k));
        self.widths.retain(|k, _| scan.broken_links.contains(k));
        let mut pass = RepairPass { open: keys.len(), ..RepairPass::default() };
        for &(lo, hi) in &scan.missing {
            let detected = *self.detected.entry(lo).or_insert(now);
            let to = hi.min(lo + self.opts.chunk - 1);
            let fixed = self.attempt(lo, lo, to, RepairReason::Missing, detected).await?;
            if fixed { pass.repaired += 1 } else { pass.failed += 1 }
        }
        let top = tip.saturating_sub(self.opts.protect_top);
        for &n in &scan.broken_links {
            if n > top {
                // Near the tip a broken link is a reorg in progress: ingest owns it.
                continue;
            }
            let detected = *self.detected.entry(n).or_insert(now);
            let w = *self.widths.entry(n).or_insert(2);
            let lo = n.saturating_sub(w).max(floor);
            let hi = (n + w).min(top);
            let fixed = self.attempt(n, lo, hi, RepairReason::BrokenLink, detected).await?;
            if fixed {
                pass.repaired += 1;
            } else {
                pass.failed += 1;
                let w = self.widths.entry(n).or_insert(2);
                *w = (*w * 2).min(self.opts.max_window);
            }
        }
        for &(lo, hi) in receipt_gaps {
            let detected = *self.detected.entry(lo).or_insert(now);
            let to = hi.min(lo + self.opts.chunk - 1);
            let fixed = self.attempt_receipts(lo, to, detected).await?;
            if fixed { pass.repaired += 1 } else { pass.failed += 1 }
        }
        Ok(pass)
    }

    /// Fetch the blocks `lo..=hi` with their receipts and store the receipts of those still
    /// canonical; log the attempt. Returns whether every height got them.
    async fn attempt_receipts(&mut self, lo: u64, hi: u64, detected: i64) -> Result<bool, S::Error> {
        let numbers: Vec<u64> = (lo..=hi).collect();
        let avoid: Vec<ProviderId> = self.avoid.get(&lo).copied().into_iter().collect();
        let reason = if self.opts.index.receipts { RepairReason::Receipts } else { RepairReason::Logs };
        let mut rec = attempt_record(detected, lo, hi, reason);
        let fetched = match self.fleet.blocks_by_number_avoiding(&numbers, &avoid).await {
            Ok(mut blocks) => enrich(&self.fleet, &self.opts.index, &mut blocks).await.map(|()| blocks),
            Err(e) => Err(e),
        };
        let fixed = match fetched {
            Err(e) => {
                rec.error = Some(e.to_string());
                false
            }
            Ok(blocks) => {
                rec.provider = blocks
                    .iter()
                    .find_map(|b| b.receipts.as_ref().map(|r| r.provider).or(b.logs.as_ref().map(|l| l.provider)));
                let n = self.sink.add_receipts(blocks).await?;
                rec.blocks = n as u64;
                if n == numbers.len() {
                    rec.outcome = RepairResult::Repaired;
                    true
                } else {
                    // Some heights hold another block now: the next scan finds what is left.
                    rec.outcome = RepairResult::LinkMismatch;
                    rec.error = Some(format!(
                        "{} of {} blocks are no longer the stored ones",
                        numbers.len() - n,
                        numbers.len()
                    ));
                    false
                }
            }
        };
        self.close_attempt(lo, rec, fixed).await
    }

    /// Fetch `lo..=hi` and splice it in; log the attempt. Returns whether it was repaired.
    async fn attempt(
        &mut self,
        key: u64,
        lo: u64,
        hi: u64,
        reason: RepairReason,
        detected: i64,
    ) -> Result<bool, S::Error> {
        let numbers: Vec<u64> = (lo..=hi).collect();
        let avoid: Vec<ProviderId> = self.avoid.get(&key).copied().into_iter().collect();
        let mut rec = attempt_record(detected, lo, hi, reason);
        let fetched = match self.fleet.blocks_by_number_avoiding(&numbers, &avoid).await {
            Ok(mut blocks) => enrich(&self.fleet, &self.opts.index, &mut blocks).await.map(|()| blocks),
            other => other,
        };
        let fixed = match fetched {
            Err(e) => {
                rec.error = Some(e.to_string());
                false
            }
            Ok(blocks) => {
                rec.provider = blocks.first().map(|b| b.provider);
                if let Some(bad) = unlinked(&blocks) {
                    // Providers disagreed inside the range (a reorg while fetching, or a liar).
                    rec.error = Some(format!("fetched blocks do not link at {bad}"));
                    if let Some(b) = blocks.iter().find(|b| b.number == bad) {
                        self.avoid.insert(key, b.provider);
                    }
                    false
                } else {
                    match self.sink.repair(blocks).await? {
                        RepairOutcome::Repaired { inserted, replaced } => {
                            rec.outcome = RepairResult::Repaired;
                            rec.blocks = (inserted + replaced) as u64;
                            self.avoid.remove(&key);
                            true
                        }
                        RepairOutcome::BelowMismatch => {
                            rec.outcome = RepairResult::LinkMismatch;
                            rec.error = Some(format!(
                                "stored block {} is not the parent of the fetched range",
                                lo.saturating_sub(1)
                            ));
                            false
                        }
                        RepairOutcome::AboveMismatch => {
                            rec.outcome = RepairResult::LinkMismatch;
                            rec.error = Some(format!("stored block {} does not link to the fetched range", hi + 1));
                            false
                        }
                    }
                }
            }
        };
        self.close_attempt(key, rec, fixed).await
    }

    /// Log and record an attempt on the hole keyed `key`; a provider whose answer did not
    /// repair it is avoided for that hole next time. Returns `fixed`.
    async fn close_attempt(&mut self, key: u64, rec: RepairRecord, fixed: bool) -> Result<bool, S::Error> {
        if !fixed && let Some(p) = rec.provider {
            self.avoid.insert(key, p);
        }
        tracing::info!(
            from = rec.from,
            to = rec.to,
            reason = rec.reason.as_str(),
            outcome = rec.outcome.as_str(),
            error = rec.error.as_deref(),
            "gap repair attempt"
        );
        self.sink.record_repair(rec).await?;
        Ok(fixed)
    }
}

/// A failed attempt at `lo..=hi` so far (filled in as it goes).
fn attempt_record(detected: i64, lo: u64, hi: u64, reason: RepairReason) -> RepairRecord {
    RepairRecord {
        detected_at_ms: detected,
        attempted_at_ms: now_ms(),
        from: lo,
        to: hi,
        reason,
        provider: None,
        outcome: RepairResult::Failed,
        blocks: 0,
        error: None,
    }
}

/// The first height in `blocks` that does not link to the one before, if any.
fn unlinked(blocks: &[Block]) -> Option<u64> {
    blocks.windows(2).find(|w| w[1].parent_hash != w[0].hash || w[1].number != w[0].number + 1).map(|w| w[1].number)
}
