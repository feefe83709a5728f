//! The alerts ledger: open, keep the peak, resolve; pages for `/v1/alerts`; the telemetry
//! figures the alert rules read.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, classify};
use crate::types::from_sql;

/// One alert row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    /// Provider name, or empty for fleet-wide alerts.
    pub subject: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub state: &'static str,
    pub value: f64,
    pub peak: f64,
    pub threshold: f64,
    pub message: String,
}

/// A provider's calls over the alert window.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertWindow {
    pub provider: String,
    /// Calls that were neither cancelled nor throttled (the error-rate denominator).
    pub calls: u64,
    pub errors: u64,
    pub p95_ms: Option<f64>,
}

impl Store {
    /// Alerts newest first (id below `before`), optionally only the open ones.
    pub async fn alerts_page(&self, open_only: bool, before: i64, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/alerts/page.sql"))
            .bind(i64::from(open_only))
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let ended: Option<i64> = r.try_get(4)?;
                Ok(AlertRow {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    started_at_ms: r.try_get(3)?,
                    ended_at_ms: ended,
                    state: if ended.is_some() { "resolved" } else { "open" },
                    value: r.try_get(5)?,
                    peak: r.try_get(6)?,
                    threshold: r.try_get(7)?,
                    message: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Open an alert; returns its id.
    pub async fn open_alert(
        &self,
        kind: &str,
        subject: &str,
        at_ms: i64,
        value: f64,
        threshold: f64,
        message: &str,
    ) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(include_str!("../../sql/alerts/open.sql"))
            .bind(kind)
            .bind(subject)
            .bind(at_ms)
            .bind(value)
            .bind(threshold)
            .bind(message)
            .fetch_one(&self.writer)
            .await
            .map_err(classify)?;
        Ok(id)
    }

    /// Record a worse value on an open alert.
    pub async fn alert_peak(&self, kind: &str, subject: &str, value: f64) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../sql/alerts/peak.sql"))
            .bind(kind)
            .bind(subject)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Resolve the open alert of `kind` for `subject`; returns whether one was open.
    pub async fn resolve_alert(&self, kind: &str, subject: &str, at_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(include_str!("../../sql/alerts/resolve.sql"))
            .bind(kind)
            .bind(subject)
            .bind(at_ms)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(r.rows_affected() > 0)
    }

    /// Per provider since `since_ms`: calls, errors, p95 latency of successes.
    pub async fn alert_windows(&self, since_ms: i64) -> Result<Vec<AlertWindow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/alerts/window_stats.sql"))
            .bind(since_ms)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                let p95: Option<i64> = r.try_get(3)?;
                let p95_ms = p95.map(super::query::us_to_ms);
                Ok(AlertWindow {
                    provider: r.try_get(0)?,
                    calls: from_sql("calls", r.try_get(1)?)?,
                    errors: from_sql("errors", r.try_get(2)?)?,
                    p95_ms,
                })
            })
            .collect()
    }

    /// Timestamps (seconds) of the newest `n` canonical blocks, newest first.
    pub async fn recent_timestamps(&self, n: u32) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(include_str!("../../sql/alerts/recent_timestamps.sql"))
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(|t| Ok(from_sql("timestamp", t)?)).collect()
    }
}
