//! Provider health routes: live fleet state (breaker, score and its parts, lag, credits, rate)
//! joined with telemetry windows (1 m, 5 m, 1 h) read from the minute rollups by
//! `sql/api/provider_window.sql`, the same rules as the `provider_health_*` views users query.

use std::sync::Arc;

use super::blocks::{Params, id_cursor, limit_param, next_id_cursor, params};
use super::body::{
    CapabilitiesDoc, FleetView, LiveProvider, ProviderDoc, ProviderOne, Providers, RateUsage, RequestsPage,
};
use super::{ApiError, ApiState};
use crate::fleet::ProviderStatus;
use crate::store::ProviderWindow;
use axum::Json;
use axum::extract::{Path, State};

/// The windows of one minute, computed at `at`: (label, start ms, rows per provider).
type Windows = Vec<(&'static str, i64, Vec<ProviderWindow>)>;

/// Window figures reused for up to `CACHE_FOR`: the 1h window groups thousands of histogram
/// rows, and a dashboard polling every second should not pay that on every request.
#[derive(Debug, Default)]
pub(super) struct WindowsCache(tokio::sync::Mutex<Option<(std::time::Instant, i64, Arc<Windows>)>>);

const CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Windows over the minute rollups: the last N whole minutes plus the current one.
const WINDOWS: [(&str, i64); 3] = [("1m", 1), ("5m", 5), ("1h", 60)];
const MINUTE_MS: i64 = 60_000;

fn live_doc(p: &ProviderStatus) -> LiveProvider {
    let fraction = p.daily_credit_budget.filter(|b| *b > 0).map(|b| crate::store::ratio(p.credits_today, b));
    LiveProvider {
        reason: p.reason.clone(),
        tier: p.tier,
        primary: p.primary,
        breaker: p.breaker,
        head: p.head,
        lag_blocks: p.lag_blocks,
        lag_seconds: p.lag_secs,
        heads: p.heads,
        poll_interval_ms: p.poll_interval_ms,
        score: p.score,
        score_parts: p.parts,
        live_window: p.window,
        credits_today: p.credits_today,
        daily_credit_budget: p.daily_credit_budget,
        credits_fraction: fraction,
        rate_limit_rps: p.rps_limit,
        cooldown_ms: p.cooldown_ms,
    }
}

/// The windows of the current minute, from the cache when it is fresh enough.
async fn windows(state: &ApiState, this_minute: i64) -> Result<Arc<Windows>, ApiError> {
    // Held across the queries: concurrent requests wait for one computation, not start their own.
    let mut slot = state.0.windows_cache.0.lock().await;
    if let Some((at, minute, w)) = slot.as_ref()
        && *minute == this_minute
        && at.elapsed() < CACHE_FOR
    {
        return Ok(w.clone());
    }
    let mut w: Windows = Vec::new();
    for (label, minutes) in WINDOWS {
        let start = this_minute - minutes * MINUTE_MS;
        w.push((label, start, state.0.store.provider_windows(start, this_minute + MINUTE_MS).await?));
    }
    let w = Arc::new(w);
    *slot = Some((std::time::Instant::now(), this_minute, w.clone()));
    Ok(w)
}

/// Calls per second over the 1m window against the current rate limit.
fn rate_usage(status: Option<&ProviderStatus>, windows: &Windows, name: &str, now: i64) -> Option<RateUsage> {
    let limit = status.and_then(|st| st.rps_limit)?;
    let (_, start, rows) = windows.first()?;
    let row = rows.iter().find(|r| r.provider == name)?;
    #[allow(clippy::cast_precision_loss)]
    let secs = ((now - start).max(1000)) as f64 / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let rps = row.requests as f64 / secs;
    (limit > 0.0).then(|| RateUsage { rps, limit_rps: limit, fraction: rps / limit })
}

/// Build the provider documents (all, or the one named) and the fleet-wide figures.
async fn build(state: &ApiState, only: Option<&str>) -> Result<(FleetView, Vec<ProviderDoc>), ApiError> {
    let store = &state.0.store;
    let now = crate::types::now_ms();
    let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
    let windows = windows(state, this_minute).await?;
    let live = state.0.live.as_ref().map(|l| l.fleet.status()).unwrap_or_default();
    let mut learned = store.capabilities().await?;
    let mut out = Vec::new();
    for (name, url) in store.provider_names().await? {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let status = live.iter().find(|s| s.name == name);
        // Not in the running fleet: an old provider, or `serve` without a fleet.
        let absent = if state.0.live.is_some() { "retired" } else { "unknown" };
        let w = windows
            .iter()
            .filter_map(|(label, _, rows)| rows.iter().find(|r| r.provider == name).map(|r| (*label, r.clone())))
            .collect();
        out.push(ProviderDoc {
            state: status.map_or(absent, |s| s.state.as_str()),
            live: status.map(live_doc),
            windows: w,
            rate_limit_usage: rate_usage(status, &windows, &name, now),
            capabilities: CapabilitiesDoc {
                live: status.map(|s| s.capabilities),
                learned: learned.extract_if(.., |c| c.provider == name).collect(),
            },
            name,
            url,
        });
    }
    let fleet = FleetView {
        as_of_ms: now,
        windows_since_ms: windows.iter().map(|(label, start, _)| (*label, *start)).collect(),
        windows_end_ms: this_minute + MINUTE_MS,
        fleet_head: state.0.live.as_ref().and_then(|l| l.fleet.head()).map(|h| h.number),
        stored_head: store.stored_tip().await?.map(|t| t.number),
        strategy: state.0.live.as_ref().map(|l| l.fleet.options().strategy.as_str()),
    };
    Ok((fleet, out))
}

/// `GET /v1/providers`
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<Providers>, ApiError> {
    let (fleet, providers) = build(&state, None).await?;
    Ok(Json(Providers { fleet, providers }))
}

/// `GET /v1/providers/{name}`
pub(super) async fn one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ProviderOne>, ApiError> {
    let (fleet, mut found) = build(&state, Some(&name)).await?;
    let provider = found.pop().ok_or_else(|| ApiError::NotFound(format!("no provider named {name:?}")))?;
    Ok(Json(ProviderOne { provider, fleet }))
}

/// `GET /v1/providers/{name}/requests?limit=&cursor=`: raw telemetry, newest first.
pub(super) async fn requests(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    q: Params,
) -> Result<Json<RequestsPage>, ApiError> {
    let map = params(q, &["limit", "cursor"])?;
    let limit = limit_param(&map, 100, 1000)?;
    let store = &state.0.store;
    if !store.provider_names().await?.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::NotFound(format!("no provider named {name:?}")));
    }
    let rows = store.provider_requests(&name, id_cursor(&map)?, limit).await?;
    let next = next_id_cursor(rows.len(), limit, rows.last().map(|r| r.id));
    Ok(Json(RequestsPage { provider: name, requests: rows, next_cursor: next }))
}
