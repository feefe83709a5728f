//! Provider health routes: live fleet state (breaker, score and its parts, lag, credits, rate)
//! joined with telemetry windows (1 m, 5 m, 1 h) read from the minute rollups by
//! `sql/api/provider_window.sql`, the same rules as the `provider_health_*` views users query.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::blocks::{Params, id_cursor, limit_param, next_id_cursor, params};
use super::{ApiError, ApiState};
use crate::fleet::ProviderStatus;
use crate::store::ProviderWindow;

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

fn live_json(p: &ProviderStatus) -> Value {
    let fraction = p.daily_credit_budget.filter(|b| *b > 0).map(|b| crate::store::ratio(p.credits_today, b));
    json!({
        "state": p.state,
        "reason": p.reason,
        "tier": match p.tier { crate::config::Tier::Primary => "primary", crate::config::Tier::Fallback => "fallback" },
        "primary": p.primary,
        "breaker": p.breaker.as_str(),
        "head": p.head,
        "lag_blocks": p.lag_blocks,
        "lag_seconds": p.lag_secs,
        "score": p.score,
        "score_parts": {
            "weight": p.parts.weight,
            "latency": p.parts.latency,
            "errors": p.parts.errors,
            "throttles": p.parts.throttles,
            "lag": p.parts.lag,
            "probing": p.parts.probing,
            "budget": p.parts.budget,
        },
        "live_window": {
            "samples": p.window.samples,
            "successes": p.window.successes,
            "p50_ms": p.window.p50_ms,
            "p95_ms": p.window.p95_ms,
            "p99_ms": p.window.p99_ms,
            "error_rate": p.window.error_rate,
            "throttle_rate": p.window.throttle_rate,
        },
        "credits_today": p.credits_today,
        "daily_credit_budget": p.daily_credit_budget,
        "credits_fraction": fraction,
        "rate_limit_rps": p.rps_limit,
        "cooldown_ms": p.cooldown_ms,
    })
}

fn window_json(w: &ProviderWindow) -> Value {
    json!({
        "requests": w.requests,
        "ok": w.ok,
        "errors": w.errors,
        "throttled": w.throttled,
        "error_rate": w.error_rate,
        "throttle_rate": w.throttle_rate,
        "credits": w.credits,
        "p50_ms": w.p50_ms,
        "p95_ms": w.p95_ms,
        "p99_ms": w.p99_ms,
    })
}

/// Build the provider documents (all, or the one named).
async fn build(state: &ApiState, only: Option<&str>) -> Result<Value, ApiError> {
    let store = &state.0.store;
    let now = crate::types::now_ms();
    let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
    let windows = {
        // Held across the queries: concurrent requests wait for one computation, not start their own.
        let mut slot = state.0.windows_cache.0.lock().await;
        match slot.as_ref() {
            Some((at, minute, w)) if *minute == this_minute && at.elapsed() < CACHE_FOR => w.clone(),
            _ => {
                let mut w: Windows = Vec::new();
                for (label, minutes) in WINDOWS {
                    let start = this_minute - minutes * MINUTE_MS;
                    w.push((label, start, store.provider_windows(start, this_minute + MINUTE_MS).await?));
                }
                let w = Arc::new(w);
                *slot = Some((std::time::Instant::now(), this_minute, w.clone()));
                w
            }
        }
    };
    let since: serde_json::Map<String, Value> =
        windows.iter().map(|(label, start, _)| ((*label).to_string(), json!(start))).collect();
    let names = store.provider_names().await?;
    let live = state.0.live.as_ref().map(|l| l.fleet.status()).unwrap_or_default();
    let mut out = Vec::new();
    for (name, url) in &names {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let mut doc = json!({ "name": name, "url": url });
        let status = live.iter().find(|s| &s.name == name);
        if let (Some(o), Some(s)) = (doc.as_object_mut(), status) {
            if let Value::Object(l) = live_json(s) {
                o.extend(l);
            }
        } else if let Some(o) = doc.as_object_mut() {
            // Not in the running fleet (an old provider, or `serve` without a fleet).
            o.insert("state".into(), json!(if state.0.live.is_some() { "retired" } else { "unknown" }));
        }
        let mut w = serde_json::Map::new();
        for (label, _, rows) in windows.iter() {
            if let Some(row) = rows.iter().find(|r| &r.provider == name) {
                w.insert((*label).to_string(), window_json(row));
            }
        }
        // Rate-limit usage: the calls per second of the 1m window against the current limit.
        let usage = status.and_then(|st| st.rps_limit).zip(windows.first()).and_then(|(limit, (_, start, rows))| {
            let row = rows.iter().find(|r| &r.provider == name)?;
            #[allow(clippy::cast_precision_loss)]
            let secs = ((now - start).max(1000)) as f64 / 1000.0;
            #[allow(clippy::cast_precision_loss)]
            let rps = row.requests as f64 / secs;
            (limit > 0.0).then(|| json!({ "rps": rps, "limit_rps": limit, "fraction": rps / limit }))
        });
        if let Some(o) = doc.as_object_mut() {
            o.insert("windows".into(), Value::Object(w));
            o.insert("rate_limit_usage".into(), usage.unwrap_or(Value::Null));
        }
        out.push(doc);
    }
    let fleet_head = state.0.live.as_ref().and_then(|l| l.fleet.head()).map(|h| h.number);
    let stored = store.stored_tip().await?.map(|t| t.number);
    let strategy = state.0.live.as_ref().map(|l| l.fleet.options().strategy.as_str());
    Ok(json!({
        "as_of_ms": now,
        "windows_since_ms": since,
        "windows_end_ms": this_minute + MINUTE_MS,
        "fleet_head": fleet_head,
        "stored_head": stored,
        "strategy": strategy,
        "providers": out,
    }))
}

/// `GET /v1/providers`
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(build(&state, None).await?))
}

/// `GET /v1/providers/{name}`
pub(super) async fn one(State(state): State<ApiState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let mut all = build(&state, Some(&name)).await?;
    let found = all.get_mut("providers").and_then(|p| p.as_array_mut()).and_then(|a| a.pop());
    let Some(mut p) = found else {
        return Err(ApiError::NotFound(format!("no provider named {name:?}")));
    };
    if let (Some(o), Some(all)) = (p.as_object_mut(), all.as_object()) {
        for k in ["as_of_ms", "windows_since_ms", "windows_end_ms", "fleet_head", "stored_head", "strategy"] {
            if let Some(v) = all.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
    }
    Ok(Json(p))
}

/// `GET /v1/providers/{name}/requests?limit=&cursor=`: raw telemetry, newest first.
pub(super) async fn requests(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let map = params(q, &["limit", "cursor"])?;
    let limit = limit_param(&map, 100, 1000)?;
    let store = &state.0.store;
    if !store.provider_names().await?.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::NotFound(format!("no provider named {name:?}")));
    }
    let rows = store.provider_requests(&name, id_cursor(&map)?, limit).await?;
    let next = next_id_cursor(rows.len(), limit, rows.last().map(|r| r.id));
    Ok(Json(json!({ "provider": name, "requests": rows, "next_cursor": next })))
}
