//! The built-in alert evaluator: every `interval` it reads the telemetry (SQL) and the live
//! fleet, opens an alert when a rule fires and resolves it when the rule clears. Each change
//! is a row in `alerts`, a log line, and optionally a webhook POST (retried).
//!
//! Rules (thresholds from `[alerts]`): `error_rate` and `p95_latency` per provider over the
//! window (after `min_samples` calls); `lag_blocks` / `lag_seconds` per provider; `gap_open`
//! (a hole older than `gap_secs`); `credits` (today's spend over a share of the daily budget);
//! `no_new_block` (nothing stored for `stale_block_times` block times); `sink_backlog` per
//! broker sink (more than `sink_backlog_blocks` stored blocks not yet acknowledged).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::config::AlertsConfig;
use crate::fleet::Fleet;
use crate::store::{Store, StoreError};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What an alert is about. `as_str` is the text in `alerts.kind`, logs, metrics and webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    ErrorRate,
    P95Latency,
    LagBlocks,
    LagSeconds,
    Credits,
    GapOpen,
    NoNewBlock,
    SinkBacklog,
}

impl AlertKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::P95Latency => "p95_latency",
            Self::LagBlocks => "lag_blocks",
            Self::LagSeconds => "lag_seconds",
            Self::Credits => "credits",
            Self::GapOpen => "gap_open",
            Self::NoNewBlock => "no_new_block",
            Self::SinkBacklog => "sink_backlog",
        }
    }
}

/// An alert opening or resolving (the webhook's `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEdge {
    Opened,
    Resolved,
}

/// The webhook body for one edge.
#[derive(Debug, serde::Serialize)]
struct WebhookBody<'a> {
    event: AlertEdge,
    at_ms: i64,
    alert: WebhookAlert<'a>,
}

#[derive(Debug, serde::Serialize)]
struct WebhookAlert<'a> {
    kind: AlertKind,
    subject: &'a str,
    value: f64,
    threshold: f64,
    message: &'a str,
}

/// One rule's verdict for one subject on this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: AlertKind,
    /// Provider name, or empty for fleet-wide rules.
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub firing: bool,
    pub message: String,
}

/// The evaluator. Run it with [`Evaluator::run`].
pub struct Evaluator {
    store: Store,
    fleet: Option<Arc<Fleet>>,
    cfg: AlertsConfig,
    webhook: Option<(http::Uri, HttpClient)>,
    /// Open alerts: (kind, subject) → worst value so far.
    open: HashMap<(String, String), f64>,
    /// When each open gap (from, to) was first seen.
    gaps_seen: BTreeMap<(u64, u64), Instant>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").field("open", &self.open).finish_non_exhaustive()
    }
}

impl Evaluator {
    /// An evaluator over `store` and (when following) the live `fleet`; `webhook` is the
    /// resolved URL (secrets expanded).
    pub fn new(
        store: Store,
        fleet: Option<Arc<Fleet>>,
        cfg: AlertsConfig,
        webhook: Option<String>,
    ) -> Result<Self, String> {
        let webhook = match webhook {
            None => None,
            Some(u) => {
                let uri: http::Uri = u.parse().map_err(|e| format!("alerts.webhook_url: {e}"))?;
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .try_with_platform_verifier()
                    .map_err(|e| format!("alerts.webhook_url: TLS setup: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Some((uri, Client::builder(TokioExecutor::new()).build(connector)))
            }
        };
        Ok(Self { store, fleet, cfg, webhook, open: HashMap::new(), gaps_seen: BTreeMap::new() })
    }

    /// Pick up the alerts left open in the database (by an earlier run), so they are resolved
    /// rather than opened twice.
    pub async fn load_open(&mut self) -> Result<usize, StoreError> {
        let rows = self.store.alerts_page(true, i64::MAX, 1000).await?;
        let n = rows.len();
        for r in rows {
            self.open.insert((r.kind, r.subject), r.peak);
        }
        Ok(n)
    }

    /// Evaluate every `interval_ms` until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        if let Err(e) = self.load_open().await {
            tracing::warn!(error = %e, "cannot read open alerts");
        }
        let every = Duration::from_millis(self.cfg.interval_ms);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "alert evaluation failed");
            }
        }
    }

    /// One evaluation: compute verdicts, then open, update or resolve alerts.
    pub async fn tick(&mut self) -> Result<Vec<Verdict>, StoreError> {
        let verdicts = self.verdicts().await?;
        let now = crate::types::now_ms();
        for v in &verdicts {
            let key = (v.kind.as_str().to_string(), v.subject.clone());
            let kind = v.kind.as_str();
            match (v.firing, self.open.get(&key).copied()) {
                (true, None) => {
                    self.store.open_alert(kind, &v.subject, now, v.value, v.threshold, &v.message).await?;
                    self.open.insert(key, v.value);
                    tracing::warn!(alert = kind, subject = %v.subject, value = v.value, threshold = v.threshold, message = %v.message, "alert opened");
                    metrics::counter!("blockstreamer_alerts_opened_total", "kind" => kind).increment(1);
                    self.notify(AlertEdge::Opened, v, now);
                }
                (true, Some(peak)) => {
                    if v.value > peak {
                        self.store.alert_peak(kind, &v.subject, v.value).await?;
                        self.open.insert(key, v.value);
                    }
                }
                (false, Some(_)) => {
                    self.store.resolve_alert(kind, &v.subject, now).await?;
                    self.open.remove(&key);
                    tracing::info!(alert = kind, subject = %v.subject, value = v.value, "alert resolved");
                    self.notify(AlertEdge::Resolved, v, now);
                }
                (false, None) => {}
            }
        }
        metrics::gauge!("blockstreamer_alerts_open").set(u32::try_from(self.open.len()).map_or(f64::MAX, f64::from));
        Ok(verdicts)
    }

    async fn verdicts(&mut self) -> Result<Vec<Verdict>, StoreError> {
        let c = &self.cfg;
        let mut out = Vec::new();
        let window_ms = i64::try_from(c.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let since = crate::types::now_ms().saturating_sub(window_ms);
        for w in self.store.alert_windows(since).await? {
            let enough = w.calls >= c.min_samples;
            let rate = crate::store::ratio(w.errors, w.calls);
            out.push(Verdict {
                kind: AlertKind::ErrorRate,
                subject: w.provider.clone(),
                value: rate,
                threshold: c.error_rate,
                firing: enough && rate > c.error_rate,
                message: format!(
                    "{}: {:.1}% of {} calls failed over {} s",
                    w.provider,
                    rate * 100.0,
                    w.calls,
                    c.window_secs
                ),
            });
            let p95 = w.p95_ms.unwrap_or(0.0);
            out.push(Verdict {
                kind: AlertKind::P95Latency,
                subject: w.provider.clone(),
                value: p95,
                threshold: c.p95_ms,
                firing: enough && p95 > c.p95_ms,
                message: format!("{}: p95 latency {p95:.0} ms over {} s", w.provider, c.window_secs),
            });
        }
        if let Some(fleet) = &self.fleet {
            for p in fleet.status() {
                #[allow(clippy::cast_precision_loss)]
                let lag = p.lag_blocks as f64;
                #[allow(clippy::cast_precision_loss)]
                let limit = c.lag_blocks as f64;
                out.push(Verdict {
                    kind: AlertKind::LagBlocks,
                    subject: p.name.clone(),
                    value: lag,
                    threshold: limit,
                    firing: lag > limit,
                    message: format!("{}: {} blocks behind the fleet head", p.name, p.lag_blocks),
                });
                out.push(Verdict {
                    kind: AlertKind::LagSeconds,
                    subject: p.name.clone(),
                    value: p.lag_secs,
                    threshold: c.lag_secs,
                    firing: p.lag_secs > c.lag_secs,
                    message: format!("{}: {:.0} s behind the fleet head", p.name, p.lag_secs),
                });
                if let Some(budget) = p.daily_credit_budget.filter(|b| *b > 0) {
                    let used = crate::store::ratio(p.credits_today, budget);
                    out.push(Verdict {
                        kind: AlertKind::Credits,
                        subject: p.name.clone(),
                        value: used,
                        threshold: c.credits_fraction,
                        firing: used > c.credits_fraction,
                        message: format!(
                            "{}: {} of {} daily credits spent ({:.0}%)",
                            p.name,
                            p.credits_today,
                            budget,
                            used * 100.0
                        ),
                    });
                }
            }
            out.push(self.stale_verdict().await?);
        }
        out.push(self.gap_verdict().await?);
        self.sink_verdicts(&mut out).await?;
        Ok(out)
    }

    /// One verdict per broker sink: its backlog against the stored head.
    async fn sink_verdicts(&self, out: &mut Vec<Verdict>) -> Result<(), StoreError> {
        let sinks = self.store.sinks().await?;
        if sinks.is_empty() {
            return Ok(());
        }
        let head = self.store.stored_tip().await?.map(|t| t.number);
        #[allow(clippy::cast_precision_loss)]
        let limit = self.cfg.sink_backlog_blocks as f64;
        for s in sinks {
            let backlog = s.position.backlog(head).unwrap_or(0);
            let why = s.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default();
            #[allow(clippy::cast_precision_loss)]
            let value = backlog as f64;
            out.push(Verdict {
                kind: AlertKind::SinkBacklog,
                message: format!("sink {}: {backlog} stored blocks not yet acknowledged by the broker{why}", s.sink),
                subject: s.sink,
                value,
                threshold: limit,
                firing: value > limit,
            });
        }
        Ok(())
    }

    async fn gap_verdict(&mut self) -> Result<Verdict, StoreError> {
        let scan = self.store.scan_gaps().await?;
        let now = Instant::now();
        let mut current: Vec<(u64, u64)> = scan.missing.clone();
        current.extend(scan.broken_links.iter().map(|n| (*n, *n)));
        current.extend(scan.missing_receipts.iter().copied());
        metrics::gauge!("blockstreamer_open_gaps").set(u32::try_from(current.len()).map_or(f64::MAX, f64::from));
        let missing: u64 = scan.missing.iter().map(|(a, b)| b - a + 1).sum();
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("blockstreamer_missing_blocks").set(missing as f64);
        self.gaps_seen.retain(|k, _| current.contains(k));
        for g in &current {
            self.gaps_seen.entry(*g).or_insert(now);
        }
        let oldest =
            self.gaps_seen.values().map(|t| now.saturating_duration_since(*t).as_secs_f64()).fold(0.0, f64::max);
        #[allow(clippy::cast_precision_loss)]
        let limit = self.cfg.gap_secs as f64;
        let listed: Vec<String> =
            current.iter().take(5).map(|(a, b)| if a == b { a.to_string() } else { format!("{a}..={b}") }).collect();
        Ok(Verdict {
            kind: AlertKind::GapOpen,
            subject: String::new(),
            value: oldest,
            threshold: limit,
            firing: !current.is_empty() && oldest > limit,
            message: format!("{} open gap(s) ({}), oldest seen {oldest:.0} s ago", current.len(), listed.join(", ")),
        })
    }

    async fn stale_verdict(&self) -> Result<Verdict, StoreError> {
        let block_ms = match self.cfg.block_time_ms {
            Some(ms) => ms,
            None => {
                // Median gap between the newest stored blocks; 12 s (Ethereum) until known.
                let ts = self.store.recent_timestamps(21).await?;
                let mut gaps: Vec<u64> = ts.windows(2).map(|w| w[0].saturating_sub(w[1])).collect();
                gaps.sort_unstable();
                gaps.get(gaps.len() / 2).map_or(12_000, |s| (*s).max(1) * 1000)
            }
        };
        #[allow(clippy::cast_precision_loss)]
        let limit_s = self.cfg.stale_block_times * block_ms as f64 / 1000.0;
        let tip = self.store.stored_tip().await?;
        let age_ms = tip.map_or(0, |t| crate::types::now_ms().saturating_sub(t.fetched_at_ms));
        #[allow(clippy::cast_precision_loss)]
        let age_s = age_ms as f64 / 1000.0;
        Ok(Verdict {
            kind: AlertKind::NoNewBlock,
            subject: String::new(),
            value: age_s,
            threshold: limit_s,
            firing: tip.is_some() && age_s > limit_s,
            message: format!("no new block stored for {age_s:.0} s (block time {block_ms} ms)"),
        })
    }

    /// POST the change to the webhook in the background, retrying with backoff.
    fn notify(&self, event: AlertEdge, v: &Verdict, at_ms: i64) {
        let Some((uri, client)) = self.webhook.clone() else { return };
        let alert = WebhookAlert {
            kind: v.kind,
            subject: &v.subject,
            value: v.value,
            threshold: v.threshold,
            message: &v.message,
        };
        let Ok(body) = serde_json::to_string(&WebhookBody { event, at_ms, alert }) else { return };
        let retries = self.cfg.webhook_retries;
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(500);
            for attempt in 0..=retries {
                let req = http::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body.clone())));
                let Ok(req) = req else { return };
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) if resp.status().is_success() => return,
                    Ok(Ok(resp)) => tracing::warn!(status = %resp.status(), attempt, "alert webhook refused"),
                    Ok(Err(e)) => tracing::warn!(error = %e, attempt, "alert webhook failed"),
                    Err(_) => tracing::warn!(attempt, "alert webhook timed out"),
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            metrics::counter!("blockstreamer_alert_webhook_failures_total").increment(1);
        });
    }
}
