//! `/metrics`: Prometheus text. Counters and histograms are recorded where things happen
//! (provider calls, commits, the API); gauges are read from the fleet and the store at scrape.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::ApiState;

/// Latency buckets (seconds): fine below 100 ms where healthy providers live, coarse up to 20 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 10.0, 20.0];

/// The process-wide recorder, installed on first use (one per process: the `metrics` facade
/// has a single global recorder). None if another recorder was installed first.
pub(super) fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let b =
                PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS);
            match b.and_then(PrometheusBuilder::install_recorder) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "prometheus recorder not installed; /metrics shows gauges only");
                    None
                }
            }
        })
        .clone()
}

fn breaker_value(b: crate::fleet::Breaker) -> f64 {
    match b {
        crate::fleet::Breaker::Closed => 0.0,
        crate::fleet::Breaker::HalfOpen => 1.0,
        crate::fleet::Breaker::Open => 2.0,
    }
}

#[allow(clippy::cast_precision_loss)]
fn f(v: u64) -> f64 {
    v as f64
}

/// Set the gauges that are read rather than counted.
async fn refresh(state: &ApiState) {
    if let Some(live) = &state.0.live {
        for p in live.fleet.status() {
            let name = p.name.clone();
            metrics::gauge!("blockstreamer_provider_head", "provider" => name.clone()).set(f(p.head.unwrap_or(0)));
            metrics::gauge!("blockstreamer_provider_lag_blocks", "provider" => name.clone()).set(f(p.lag_blocks));
            metrics::gauge!("blockstreamer_provider_lag_seconds", "provider" => name.clone()).set(p.lag_secs);
            metrics::gauge!("blockstreamer_provider_breaker_state", "provider" => name.clone())
                .set(breaker_value(p.breaker));
            metrics::gauge!("blockstreamer_provider_score", "provider" => name.clone()).set(p.score);
            metrics::gauge!("blockstreamer_provider_up", "provider" => name.clone()).set(if p.state.serving() {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("blockstreamer_provider_credits_today", "provider" => name.clone()).set(f(p.credits_today));
            if let Some(b) = p.daily_credit_budget {
                metrics::gauge!("blockstreamer_provider_daily_credit_budget", "provider" => name.clone()).set(f(b));
            }
            if let Some(r) = p.rps_limit {
                metrics::gauge!("blockstreamer_provider_rate_limit_rps", "provider" => name).set(r);
            }
        }
        if let Some(h) = live.fleet.head() {
            metrics::gauge!("blockstreamer_fleet_head").set(f(h.number));
        }
        metrics::gauge!("blockstreamer_telemetry_dropped").set(f(live.telemetry.dropped()));
        let (word, _) = (live.health)();
        metrics::gauge!("blockstreamer_healthy").set(if word == crate::model::HealthState::Ok { 1.0 } else { 0.0 });
    }
    if let Ok(Some(t)) = state.0.store.stored_tip().await {
        metrics::gauge!("blockstreamer_stored_head").set(f(t.number));
    }
    metrics::gauge!("blockstreamer_db_wal_bytes").set(f(state.0.store.wal_bytes()));
}

/// CPU seconds (user + system) and resident bytes of this process, from /proc (Linux).
fn process_stats() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Linux reports clock ticks at USER_HZ = 100 and 4 KiB pages on the platforms we ship for.
    Some(((utime + stime) / 100.0, pages * 4096.0))
}

/// `GET /metrics`
pub(super) async fn render(State(state): State<ApiState>) -> Response {
    refresh(&state).await;
    let mut body = state.0.prometheus.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    // Written by hand: the `metrics` facade has integer counters only, and CPU time is a
    // fractional counter by the Prometheus process-metrics convention.
    if let Some((cpu, rss)) = process_stats() {
        use std::fmt::Write;
        let _ = write!(
            body,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}
