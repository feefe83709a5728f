//! The telemetry writer: drains the bounded telemetry channel and writes batches of rows.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::multirow::{self, ROWS_PER_STATEMENT};
use super::{Store, StoreError, classify};
use crate::model::{CapabilityRecord, ClientCall, ProviderEvent, RequestSample, Sighting, TelemetryEvent};
use crate::types::to_sql;

/// Most events written in one transaction.
const MAX_BATCH: usize = 2_000;
/// How long an event may wait before it is flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

const INSERT_REQUESTS: &str = include_str!("../../sql/store/insert_requests.sql");
const INSERT_SIGHTINGS: &str = include_str!("../../sql/store/insert_sightings.sql");
const INSERT_EVENTS: &str = include_str!("../../sql/store/insert_events.sql");
const INSERT_CLIENTS: &str = include_str!("../../sql/store/insert_client_requests.sql");

/// Counts kept by the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryWriterStats {
    pub requests_written: u64,
    pub sightings_written: u64,
    pub events_written: u64,
    /// Batches that could not be inserted (storage full, I/O errors), and the events in them.
    pub failed_batches: u64,
    pub failed_events: u64,
}

/// A failed batch is warned about at once, then at most this often (a full disk fails every
/// batch; the counts say how many).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Writes telemetry events in batches until cancelled, then drains what is queued.
#[derive(Debug)]
pub struct TelemetryWriter {
    store: Store,
    rx: mpsc::Receiver<TelemetryEvent>,
    stats: TelemetryWriterStats,
    last_warning: Option<tokio::time::Instant>,
}

impl TelemetryWriter {
    /// A writer over the receiving end of a `TelemetrySink` channel.
    pub fn new(store: Store, rx: mpsc::Receiver<TelemetryEvent>) -> Self {
        Self { store, rx, stats: TelemetryWriterStats::default(), last_warning: None }
    }

    /// Run until `cancel` fires and the channel is drained (or all senders are gone).
    pub async fn run(mut self, cancel: CancellationToken) -> TelemetryWriterStats {
        let mut buf = Vec::with_capacity(MAX_BATCH);
        loop {
            let closed = tokio::select! {
                biased;
                n = self.rx.recv_many(&mut buf, MAX_BATCH) => n == 0,
                () = cancel.cancelled() => {
                    // Drain what is already queued so a clean shutdown loses nothing.
                    while let Ok(ev) = self.rx.try_recv() {
                        buf.push(ev);
                    }
                    self.flush(&mut buf).await;
                    return self.stats;
                }
            };
            if closed {
                self.flush(&mut buf).await;
                return self.stats;
            }
            // Let a short burst accumulate: one transaction per ~200 ms, not per event.
            if buf.len() < MAX_BATCH {
                let deadline = tokio::time::sleep(FLUSH_EVERY);
                tokio::pin!(deadline);
                while buf.len() < MAX_BATCH {
                    let room = MAX_BATCH - buf.len();
                    tokio::select! {
                        () = &mut deadline => break,
                        n = self.rx.recv_many(&mut buf, room) => if n == 0 { break },
                        () = cancel.cancelled() => break,
                    }
                }
            }
            self.flush(&mut buf).await;
        }
    }

    async fn flush(&mut self, buf: &mut Vec<TelemetryEvent>) {
        if buf.is_empty() {
            return;
        }
        match self.write(buf).await {
            Ok((r, s, e)) => {
                self.stats.requests_written += r;
                self.stats.sightings_written += s;
                self.stats.events_written += e;
            }
            Err(e) => {
                let events = buf.len() as u64;
                self.stats.failed_batches += 1;
                self.stats.failed_events += events;
                metrics::counter!("blockstreamer_telemetry_failed_batches_total").increment(1);
                metrics::counter!("blockstreamer_telemetry_failed_events_total").increment(events);
                let now = tokio::time::Instant::now();
                if self.last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                    self.last_warning = Some(now);
                    tracing::warn!(
                        error = %e,
                        events,
                        failed_batches = self.stats.failed_batches,
                        failed_events = self.stats.failed_events,
                        "telemetry batch not written; its rows are lost"
                    );
                }
            }
        }
        buf.clear();
    }

    async fn write(&self, events: &[TelemetryEvent]) -> Result<(u64, u64, u64), StoreError> {
        let mut reqs: Vec<&RequestSample> = Vec::new();
        let mut sights: Vec<&Sighting> = Vec::new();
        let mut decisions: Vec<&ProviderEvent> = Vec::new();
        let mut caps: Vec<&CapabilityRecord> = Vec::new();
        let mut clients: Vec<&ClientCall> = Vec::new();
        for ev in events {
            match ev {
                TelemetryEvent::Request(r) => reqs.push(r),
                TelemetryEvent::Sighting(s) => sights.push(s),
                TelemetryEvent::Provider(e) => decisions.push(e),
                TelemetryEvent::Capability(c) => caps.push(c),
                TelemetryEvent::Client(c) => clients.push(c),
            }
        }
        let mut tx = self.store.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for chunk in reqs.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(AssertSqlSafe(multirow::statement(INSERT_REQUESTS, chunk.len())));
            for r in chunk {
                q = q
                    .bind(r.ts_ms)
                    .bind(self.store.provider_id(r.provider))
                    .bind(r.method)
                    .bind(r.block_number.map(|n| to_sql("block number", n)).transpose()?)
                    .bind(r.latency_us)
                    .bind(r.outcome.as_str())
                    .bind(r.http_status.map(i64::from))
                    .bind(r.rpc_code.map(i64::from))
                    .bind(r.bytes.map(|b| to_sql("bytes", b)).transpose()?)
                    .bind(r.head_reported.map(|h| to_sql("head", h)).transpose()?)
                    .bind(i64::from(r.attempt.max(1)))
                    .bind(i64::from(r.hedged))
                    .bind(i64::from(r.batch_size.max(1)))
                    .bind(r.error.as_deref())
                    .bind(i64::from(r.credits));
            }
            q.execute(&mut *tx).await.map_err(classify)?;
        }
        for chunk in sights.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(AssertSqlSafe(multirow::statement(INSERT_SIGHTINGS, chunk.len())));
            for s in chunk {
                q = q
                    .bind(self.store.provider_id(s.provider))
                    .bind(s.hash.as_slice())
                    .bind(to_sql("block number", s.number)?)
                    .bind(s.seen_ms);
            }
            q.execute(&mut *tx).await.map_err(classify)?;
        }
        for chunk in decisions.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(AssertSqlSafe(multirow::statement(INSERT_EVENTS, chunk.len())));
            for e in chunk {
                q = q
                    .bind(e.ts_ms)
                    .bind(self.store.provider_id(e.provider))
                    .bind(e.kind.as_str())
                    .bind(e.reason.as_str());
            }
            q.execute(&mut *tx).await.map_err(classify)?;
        }
        for c in caps {
            sqlx::query(include_str!("../../sql/store/upsert_capability.sql"))
                .bind(self.store.provider_id(c.provider))
                .bind(c.method.as_str())
                .bind(i64::from(c.supported))
                .bind(c.max_range.map(|n| to_sql("block range", n)).transpose()?)
                .bind(c.ts_ms)
                .bind(c.detail.as_str())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        for chunk in clients.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(AssertSqlSafe(multirow::statement(INSERT_CLIENTS, chunk.len())));
            for c in chunk {
                q = q
                    .bind(c.ts_ms)
                    .bind(c.key_name.as_deref())
                    .bind(c.method)
                    .bind(c.source.as_str())
                    .bind(c.latency_us)
                    .bind(c.outcome.as_str())
                    .bind(c.rpc_code.map(i64::from))
                    .bind(to_sql("bytes", c.bytes)?)
                    .bind(i64::from(c.batch_size.max(1)));
            }
            q.execute(&mut *tx).await.map_err(classify)?;
        }
        if !reqs.is_empty() {
            super::rollup::fold_new(&mut tx).await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok((reqs.len() as u64, sights.len() as u64, decisions.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, ProviderId, TelemetrySink};
    use crate::store::{Access, StoreOptions};

    fn sample() -> TelemetryEvent {
        TelemetryEvent::Request(RequestSample {
            ts_ms: 1,
            provider: ProviderId(0),
            method: "eth_chainId",
            block_number: None,
            latency_us: 5,
            outcome: Outcome::Ok,
            http_status: Some(200),
            rpc_code: None,
            bytes: Some(10),
            head_reported: None,
            attempt: 1,
            hedged: false,
            batch_size: 1,
            error: None,
            credits: 0,
        })
    }

    #[test]
    fn a_batch_that_fails_to_insert_is_counted_in_the_stats_and_a_metric() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("t.db");
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stats = metrics::with_local_recorder(&recorder, || {
            rt.block_on(async {
                Store::open(&StoreOptions::new(&path)).await.unwrap_or_else(|e| panic!("{e}")).close().await;
                // Every insert fails on a read-only store.
                let store = Store::open_read_only(&path, Access::ReadOnly).await.unwrap_or_else(|e| panic!("{e}"));
                let (sink, rx) = TelemetrySink::new(16);
                for _ in 0..3 {
                    sink.record(sample());
                }
                drop(sink);
                let stats = TelemetryWriter::new(store.clone(), rx).run(CancellationToken::new()).await;
                store.close().await;
                stats
            })
        });
        assert_eq!((stats.failed_batches, stats.failed_events, stats.requests_written), (1, 3, 0));
        let text = handle.render();
        assert!(text.contains("blockstreamer_telemetry_failed_events_total 3"), "{text}");
        assert!(text.contains("blockstreamer_telemetry_failed_batches_total 1"), "{text}");
    }
}
