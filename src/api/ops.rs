//! Operating routes: liveness and readiness, alerts, read-only SQL, admin, the OpenAPI document.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::blocks::{Params, id_cursor, limit_param, next_id_cursor, params};
use super::body::{AlertsPage, Alive, Checkpoint, Health, Ready, SqlAnswer};
use super::{ApiError, ApiState, guard};

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Json<Alive> {
    Json(Alive { status: "alive" })
}

/// `GET /readyz`: 200 while the stored head is within `ready_max_lag_blocks` of the fleet head
/// and storage accepts writes; 503 with the reasons otherwise.
pub(super) async fn readyz(State(state): State<ApiState>) -> Response {
    let mut reasons: Vec<String> = Vec::new();
    let stored = match state.0.store.stored_tip().await {
        Ok(t) => t.map(|t| t.number),
        Err(e) => {
            reasons.push(format!("database unreadable: {e}"));
            None
        }
    };
    let mut fleet_head = None;
    let mut health = None;
    if let Some(live) = &state.0.live {
        let (word, why) = (live.health)();
        let word = word.as_str();
        if word != "ok" {
            reasons.push(if why.is_empty() { word.to_string() } else { format!("{word}: {why}") });
        }
        health = Some(Health { status: word, reason: why });
        fleet_head = live.fleet.head().map(|h| h.number);
        match (fleet_head, stored) {
            (None, _) => reasons.push("no provider has reported a head yet".into()),
            (Some(_), None) => reasons.push("no block stored yet".into()),
            (Some(f), Some(s)) if f > s + state.0.opts.ready_max_lag_blocks => reasons.push(format!(
                "stored head {s} is {} blocks behind the fleet head {f} (limit {})",
                f - s,
                state.0.opts.ready_max_lag_blocks
            )),
            _ => {}
        }
    }
    let ready = reasons.is_empty();
    let lag_blocks = fleet_head.zip(stored).map(|(f, s)| f.saturating_sub(s));
    let body = Ready { ready, stored_head: stored, fleet_head, lag_blocks, health, reasons };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// `GET /v1/alerts?state=open|all&limit=&cursor=`: newest first.
pub(super) async fn alerts(State(state): State<ApiState>, q: Params) -> Result<Json<AlertsPage>, ApiError> {
    let map = params(q, &["state", "limit", "cursor"])?;
    let open_only = match map.get("state").map(String::as_str) {
        None | Some("all") => false,
        Some("open") => true,
        Some(s) => return Err(ApiError::BadRequest(format!("state must be open or all, got {s:?}"))),
    };
    let limit = limit_param(&map, 100, 1000)?;
    let rows = state.0.store.alerts_page(open_only, id_cursor(&map)?, limit).await?;
    let next = next_id_cursor(rows.len(), limit, rows.last().map(|r| r.id));
    Ok(Json(AlertsPage { alerts: rows, next_cursor: next }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    #[serde(default)]
    format: Option<String>,
}

/// `POST /v1/sql` with `{"sql": "...", "params": [...], "format": "json"|"csv"}`.
pub(super) async fn sql(State(state): State<ApiState>, headers: HeaderMap, q: Params, body: Bytes) -> Response {
    match run_sql(&state, &headers, q, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run_sql(state: &ApiState, headers: &HeaderMap, q: Params, body: &[u8]) -> Result<Response, ApiError> {
    guard::check_sql(state, headers)?;
    let map = params(q, &["format"])?;
    let req: SqlRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("body must be JSON {{\"sql\": \"SELECT ...\", \"params\": [...]}}: {e}"))
    })?;
    let wants_csv = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    let format = req.format.as_deref().or(map.get("format").map(String::as_str));
    let csv = match format {
        None => wants_csv,
        Some("json") => false,
        Some("csv") => true,
        Some(f) => return Err(ApiError::BadRequest(format!("format must be json or csv, got {f:?}"))),
    };
    if req.sql.trim().is_empty() {
        return Err(ApiError::BadRequest("sql is empty".into()));
    }
    let started = std::time::Instant::now();
    let result = state.0.sandbox.query(req.sql, req.params).await;
    metrics::histogram!("blockstreamer_api_sql_duration_seconds").record(started.elapsed().as_secs_f64());
    let result = result?;
    if csv {
        let mut resp = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], result.to_csv()).into_response();
        if result.truncated
            && let Ok(v) = axum::http::HeaderValue::from_str(&state.0.opts.sql.max_rows.to_string())
        {
            resp.headers_mut().insert("x-truncated-at-rows", v);
        }
        return Ok(resp);
    }
    let row_count = result.rows.len();
    let answer = SqlAnswer {
        columns: result.columns,
        rows: result.rows,
        row_count,
        truncated: result.truncated,
        elapsed_ms: result.elapsed_ms,
    };
    Ok(Json(answer).into_response())
}

/// `GET /v1/admin/config`: the effective configuration, secrets redacted (key required).
pub(super) async fn admin_config(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    guard::check_admin(&state, &headers)?;
    Ok(Json(state.0.opts.config_redacted.clone()))
}

/// `POST /v1/admin/checkpoint`: checkpoint and truncate the WAL now (key required).
pub(super) async fn admin_checkpoint(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Checkpoint>, ApiError> {
    guard::check_admin(&state, &headers)?;
    let wal_bytes_before = state.0.store.wal_bytes();
    let truncated = state.0.store.trim_wal(0).await?;
    Ok(Json(Checkpoint { wal_bytes_before, wal_bytes_after: state.0.store.wal_bytes(), truncated }))
}

/// `GET /openapi.json`
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}

/// Unknown paths: a JSON 404.
pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json".into())
}
