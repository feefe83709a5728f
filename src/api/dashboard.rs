//! The built-in dashboard (`/`, its script and style, embedded in the binary: no build step, no
//! CDN) and the two routes only it needed: the latency series and the routing decisions.

use std::collections::BTreeMap;

use super::blocks::{Params, id_cursor, limit_param, next_id_cursor, params, uint_param};
use super::body::{EventsPage, Latency, LatencySeries};
use super::{ApiError, ApiState};
use crate::store::CallPoint;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Most raw calls one series answer reads.
const SERIES_ROWS: u32 = 200_000;

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Everything the page loads comes from this server.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// `GET /`: the dashboard page.
pub(super) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /dashboard.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// `GET /v1/events?limit=&cursor=`: routing decisions (switches, exclusions, cooldowns,
/// penalties, breaker changes) with their reasons, newest first.
pub(super) async fn events(State(state): State<ApiState>, q: Params) -> Result<Json<EventsPage>, ApiError> {
    let map = params(q, &["limit", "cursor"])?;
    let limit = limit_param(&map, 50, 1000)?;
    let rows = state.0.store.events_page(id_cursor(&map)?, limit).await?;
    let next = next_id_cursor(rows.len(), limit, rows.last().map(|r| r.id));
    Ok(Json(EventsPage { events: rows, next_cursor: next }))
}

/// Nearest-rank percentile of sorted values.
pub(super) fn nearest_rank(sorted: &[i64], pct: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Per provider and time bucket: calls, failures, p50/p95 of successful calls (ms).
fn bucketize(points: &[CallPoint], since: i64, step: i64, buckets: usize) -> BTreeMap<String, LatencySeries> {
    #[derive(Default)]
    struct Acc {
        lat: Vec<Vec<i64>>,
        calls: Vec<u64>,
        failed: Vec<u64>,
    }
    let mut per: BTreeMap<&str, Acc> = BTreeMap::new();
    for p in points {
        let Ok(i) = usize::try_from((p.ts_ms - since) / step) else { continue };
        if i >= buckets {
            continue;
        }
        let acc = per.entry(p.provider.as_str()).or_insert_with(|| Acc {
            lat: vec![Vec::new(); buckets],
            calls: vec![0; buckets],
            failed: vec![0; buckets],
        });
        acc.calls[i] += 1;
        if p.ok {
            acc.lat[i].push(p.latency_us);
        } else {
            acc.failed[i] += 1;
        }
    }
    let ms = |v: Option<i64>| v.map(crate::store::us_to_ms);
    per.into_iter()
        .map(|(name, mut acc)| {
            let (mut p50_ms, mut p95_ms) = (Vec::with_capacity(buckets), Vec::with_capacity(buckets));
            for l in &mut acc.lat {
                l.sort_unstable();
                p50_ms.push(ms(nearest_rank(l, 50)));
                p95_ms.push(ms(nearest_rank(l, 95)));
            }
            (name.to_string(), LatencySeries { p50_ms, p95_ms, calls: acc.calls, failed: acc.failed })
        })
        .collect()
}

/// `GET /v1/latency?seconds=600&step=10`: per provider, in `step`-second buckets over the last
/// `seconds`, the calls made, the failures, and p50/p95 latency of the successes (exact, from
/// the raw rows; null where a bucket had no success).
pub(super) async fn latency(State(state): State<ApiState>, q: Params) -> Result<Json<Latency>, ApiError> {
    let map = params(q, &["seconds", "step"])?;
    let seconds = uint_param(&map, "seconds")?.unwrap_or(600);
    let step = uint_param(&map, "step")?.unwrap_or(10);
    if !(10..=3600).contains(&seconds) {
        return Err(ApiError::BadRequest(format!("seconds must be within 10..=3600, got {seconds}")));
    }
    if step == 0 || step > seconds || seconds / step > 360 {
        return Err(ApiError::BadRequest(format!(
            "step must be within 1..=seconds and give at most 360 buckets, got {step} for {seconds} s"
        )));
    }
    let step_ms = i64::try_from(step * 1000).unwrap_or(i64::MAX);
    let now = crate::types::now_ms();
    // Aligned buckets, the last one holding now.
    let end = (now / step_ms + 1) * step_ms;
    let buckets = usize::try_from(seconds / step).unwrap_or(1);
    let since = end - step_ms * i64::try_from(buckets).unwrap_or(1);
    let points = state.0.store.calls_since(since, SERIES_ROWS).await?;
    let starts: Vec<i64> = (0..buckets).map(|i| since + step_ms * i64::try_from(i).unwrap_or(0)).collect();
    Ok(Json(Latency {
        step_ms,
        buckets: starts,
        truncated: points.len() == usize::try_from(SERIES_ROWS).unwrap_or(usize::MAX),
        providers: bucketize(&points, since, step_ms, buckets),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_buckets_split_by_time() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 95), Some(4));
        let pt = |provider: &str, ts_ms, latency_us, ok| CallPoint { provider: provider.into(), ts_ms, latency_us, ok };
        let points =
            vec![pt("a", 0, 1000, true), pt("a", 5, 3000, true), pt("a", 12, 7000, false), pt("b", 15, 2000, true)];
        let out = bucketize(&points, 0, 10, 2);
        let a = LatencySeries {
            calls: vec![2, 1],
            failed: vec![0, 1],
            p50_ms: vec![Some(1.0), None],
            p95_ms: vec![Some(3.0), None],
        };
        assert_eq!(out["a"], a);
        assert_eq!(out["b"].p50_ms, [None, Some(2.0)]);
    }
}
