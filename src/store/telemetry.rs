//! The telemetry writer: drains the bounded telemetry channel and writes batches of rows.

use std::time::Duration;

use alloy_primitives::hex;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError, classify};
use crate::model::{RequestSample, Sighting, TelemetryEvent};
use crate::types::to_sql;

/// Most events written in one transaction.
const MAX_BATCH: usize = 2_000;
/// How long an event may wait before it is flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

#[derive(Serialize)]
struct ReqRow<'a> {
    ts: i64,
    p: Option<i64>,
    m: &'a str,
    bn: Option<i64>,
    l: i64,
    o: &'a str,
    hs: Option<u16>,
    rc: Option<i32>,
    by: Option<i64>,
    hr: Option<i64>,
    a: u32,
    hd: u8,
    bs: u32,
    e: Option<&'a str>,
}

#[derive(Serialize)]
struct SightRow {
    p: Option<i64>,
    h: String,
    n: i64,
    s: i64,
}

/// Counts kept by the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryWriterStats {
    pub requests_written: u64,
    pub sightings_written: u64,
    pub failed_batches: u64,
}

/// Writes telemetry events in batches until cancelled, then drains what is queued.
#[derive(Debug)]
pub struct TelemetryWriter {
    store: Store,
    rx: mpsc::Receiver<TelemetryEvent>,
    stats: TelemetryWriterStats,
}

impl TelemetryWriter {
    /// A writer over the receiving end of a `TelemetrySink` channel.
    pub fn new(store: Store, rx: mpsc::Receiver<TelemetryEvent>) -> Self {
        Self { store, rx, stats: TelemetryWriterStats::default() }
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
            Ok((r, s)) => {
                self.stats.requests_written += r;
                self.stats.sightings_written += s;
            }
            Err(e) => {
                self.stats.failed_batches += 1;
                tracing::warn!(error = %e, events = buf.len(), "telemetry batch not written");
            }
        }
        buf.clear();
    }

    async fn write(&self, events: &[TelemetryEvent]) -> Result<(u64, u64), StoreError> {
        let mut reqs = Vec::new();
        let mut sights = Vec::new();
        for ev in events {
            match ev {
                TelemetryEvent::Request(r) => reqs.push(self.req_row(r)?),
                TelemetryEvent::Sighting(s) => sights.push(self.sight_row(s)?),
            }
        }
        let encode = |e: serde_json::Error| StoreError::Corrupt(format!("encoding telemetry: {e}"));
        let mut tx = self.store.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        if !reqs.is_empty() {
            sqlx::query(include_str!("../../sql/store/insert_requests.sql"))
                .bind(serde_json::to_string(&reqs).map_err(encode)?)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        if !sights.is_empty() {
            sqlx::query(include_str!("../../sql/store/insert_sightings.sql"))
                .bind(serde_json::to_string(&sights).map_err(encode)?)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok((reqs.len() as u64, sights.len() as u64))
    }

    fn req_row<'a>(&self, r: &'a RequestSample) -> Result<ReqRow<'a>, StoreError> {
        Ok(ReqRow {
            ts: r.ts_ms,
            p: self.store.provider_id(r.provider),
            m: r.method,
            bn: r.block_number.map(|n| to_sql("block number", n)).transpose()?,
            l: r.latency_us,
            o: r.outcome.as_str(),
            hs: r.http_status,
            rc: r.rpc_code,
            by: r.bytes.map(|b| to_sql("bytes", b)).transpose()?,
            hr: r.head_reported.map(|h| to_sql("head", h)).transpose()?,
            a: r.attempt.max(1),
            hd: u8::from(r.hedged),
            bs: r.batch_size.max(1),
            e: r.error.as_deref(),
        })
    }

    fn sight_row(&self, s: &Sighting) -> Result<SightRow, StoreError> {
        Ok(SightRow {
            p: self.store.provider_id(s.provider),
            h: hex::encode(s.hash),
            n: to_sql("block number", s.number)?,
            s: s.seen_ms,
        })
    }
}
