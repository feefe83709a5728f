//! Telemetry retention: delete raw rows past `raw_days` and rollups, sightings and provider
//! events past `rollup_days`, in small transactions so the ingest writer never waits long.
//!
//! Raw rows are only deleted once the rollups hold them (id at or below `rollup_last_id`), so
//! every report reads the same numbers before and after a prune.

use std::time::Duration;

use super::{Store, StoreError, classify};

const LAST_ID: &str = "rollup_last_id";
/// Rows (or, for rollups, minutes / hours) deleted per transaction.
const BATCH: i64 = 5_000;
/// Rollup minutes per transaction (each minute holds one row per provider and method).
const MINUTES_BATCH: i64 = 60;
/// Pause between batches, so block commits and telemetry flushes get the writer in between.
const PAUSE: Duration = Duration::from_millis(5);
const DAY_MS: i64 = 86_400_000;

/// What a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub raw_requests: u64,
    pub rollup_rows: u64,
    pub sightings: u64,
    pub events: u64,
    /// `/rpc` call rows (kept as long as raw provider requests).
    pub client_requests: u64,
    pub batches: u64,
}

impl Store {
    /// Run one delete statement repeatedly (`?1` cutoff, then extra binds, then the batch size)
    /// until it deletes nothing; each run is its own short write transaction.
    async fn prune_batches(
        &self,
        sql: &'static str,
        cutoff: i64,
        extra: Option<i64>,
        batch: i64,
        report: &mut PruneReport,
    ) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let mut q = sqlx::query(sql).bind(cutoff);
            if let Some(x) = extra {
                q = q.bind(x);
            }
            let done = q.bind(batch).execute(&self.writer).await.map_err(classify)?.rows_affected();
            report.batches += 1;
            total += done;
            if done == 0 {
                return Ok(total);
            }
            tokio::time::sleep(PAUSE).await;
        }
    }

    /// Delete telemetry older than the retention windows, measured back from `now_ms`.
    pub async fn prune_telemetry(
        &self,
        now_ms: i64,
        raw_days: u32,
        rollup_days: u32,
    ) -> Result<PruneReport, StoreError> {
        let raw_cut = now_ms.saturating_sub(i64::from(raw_days).saturating_mul(DAY_MS));
        let rollup_cut = now_ms.saturating_sub(i64::from(rollup_days).saturating_mul(DAY_MS));
        let folded: i64 = sqlx::query_scalar::<_, Option<i64>>(include_str!("../../sql/store/meta_get.sql"))
            .bind(LAST_ID)
            .fetch_optional(&self.writer)
            .await?
            .flatten()
            .unwrap_or(0);
        let mut r = PruneReport::default();
        r.raw_requests = self
            .prune_batches(include_str!("../../sql/retention/raw_requests.sql"), raw_cut, Some(folded), BATCH, &mut r)
            .await?;
        for sql in [
            include_str!("../../sql/retention/minutes.sql"),
            include_str!("../../sql/retention/latency_minutes.sql"),
            include_str!("../../sql/retention/error_hours.sql"),
        ] {
            r.rollup_rows += self.prune_batches(sql, rollup_cut, None, MINUTES_BATCH, &mut r).await?;
        }
        r.sightings = self
            .prune_batches(include_str!("../../sql/retention/sightings.sql"), rollup_cut, None, BATCH, &mut r)
            .await?;
        r.events =
            self.prune_batches(include_str!("../../sql/retention/events.sql"), rollup_cut, None, BATCH, &mut r).await?;
        r.client_requests = self
            .prune_batches(include_str!("../../sql/retention/client_requests.sql"), raw_cut, None, BATCH, &mut r)
            .await?;
        if r.raw_requests + r.rollup_rows + r.sightings + r.events + r.client_requests > 0 {
            // Hand freed pages back a little at a time; the rest are reused by new rows.
            sqlx::query(include_str!("../../sql/retention/incremental_vacuum.sql"))
                .execute(&self.writer)
                .await
                .map_err(classify)?;
        }
        Ok(r)
    }
}
