//! The route table: every path the API serves, its method and whether it is a JSON route (the
//! per-request deadline applies) or a stream (SSE, exports). The router is built from this
//! table and nothing else, so the table is the router's real list; a test compares it with
//! `openapi.json`.

use axum::http::{Method, StatusCode};
use axum::routing::{MethodRouter, get, post};

use super::{
    ApiState, blocks, clients, dashboard, error, export, guard, logs, metrics, ops, providers, request, rpc, sinks,
    stream, stream_logs,
};

/// How a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answered within `request_timeout_ms` (503 past it).
    Json,
    /// A stream that may run for long (no deadline; it stops when the client stops reading).
    Stream,
}

/// One served route.
pub struct Route {
    pub path: &'static str,
    pub method: Method,
    pub kind: Kind,
    handler: MethodRouter<ApiState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("path", &self.path).field("method", &self.method).finish_non_exhaustive()
    }
}

fn json_get(path: &'static str, handler: MethodRouter<ApiState>) -> Route {
    Route { path, method: Method::GET, kind: Kind::Json, handler }
}

/// Every route, in documentation order.
pub fn table() -> Vec<Route> {
    vec![
        json_get("/v1/blocks", get(blocks::list)),
        json_get("/v1/blocks/latest", get(blocks::latest)),
        json_get("/v1/blocks/{id}", get(blocks::one)),
        json_get("/v1/blocks/{id}/transactions", get(blocks::transactions)),
        json_get("/v1/blocks/{id}/logs", get(logs::of_block)),
        json_get("/v1/transactions/{hash}", get(blocks::transaction)),
        json_get("/v1/transactions/{hash}/receipt", get(logs::receipt)),
        json_get("/v1/logs", get(logs::list)),
        json_get("/v1/event-tables", get(logs::tables)),
        json_get("/v1/events/{table}", get(logs::rows)),
        json_get("/v1/decode-errors", get(logs::decode_errors)),
        json_get("/v1/index/activity", get(logs::activity)),
        json_get("/v1/reorgs", get(blocks::reorgs)),
        json_get("/v1/gaps", get(blocks::gaps)),
        json_get("/v1/providers", get(providers::list)),
        json_get("/v1/providers/{name}", get(providers::one)),
        json_get("/v1/providers/{name}/requests", get(providers::requests)),
        json_get("/v1/alerts", get(ops::alerts)),
        json_get("/v1/clients", get(clients::clients)),
        json_get("/v1/sinks", get(sinks::list)),
        Route { path: "/v1/sql", method: Method::POST, kind: Kind::Json, handler: post(ops::sql) },
        Route { path: "/rpc", method: Method::POST, kind: Kind::Json, handler: post(rpc::handle) },
        // The WebSocket upgrade answers at once (101); the connection then lives on its own task.
        Route { path: "/rpc", method: Method::GET, kind: Kind::Json, handler: get(rpc::ws::upgrade) },
        Route { path: "/rpc/{key}", method: Method::POST, kind: Kind::Json, handler: post(rpc::handle_keyed) },
        Route { path: "/rpc/{key}", method: Method::GET, kind: Kind::Json, handler: get(rpc::ws::upgrade_keyed) },
        json_get("/v1/admin/config", get(ops::admin_config)),
        Route {
            path: "/v1/admin/checkpoint",
            method: Method::POST,
            kind: Kind::Json,
            handler: post(ops::admin_checkpoint),
        },
        Route { path: "/v1/stream/blocks", method: Method::GET, kind: Kind::Stream, handler: get(stream::blocks) },
        Route { path: "/v1/stream/logs", method: Method::GET, kind: Kind::Stream, handler: get(stream_logs::logs) },
        Route { path: "/v1/export/{table}", method: Method::GET, kind: Kind::Stream, handler: get(export::export) },
        json_get("/v1/events", get(dashboard::events)),
        json_get("/v1/latency", get(dashboard::latency)),
        json_get("/", get(dashboard::index)),
        json_get("/dashboard.js", get(dashboard::script)),
        json_get("/dashboard.css", get(dashboard::style)),
        json_get("/healthz", get(ops::healthz)),
        json_get("/readyz", get(ops::readyz)),
        json_get("/metrics", get(metrics::render)),
        json_get("/openapi.json", get(ops::openapi)),
    ]
}

/// (method, path) of every served route, for the contract test.
pub fn served() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|r| (r.method, r.path)).collect()
}

/// The router: the table, a JSON 404 for the rest, and the guards every request passes
/// (outermost first): JSON error bodies, the peer's rate limit, request-head limits and the
/// Host / Origin / Content-Type checks, then the body read (size cap and deadline); JSON routes
/// also get the per-request deadline.
pub fn router(state: ApiState) -> axum::Router {
    let timeout = state.0.opts.request_timeout;
    let mut json = axum::Router::new();
    let mut streams = axum::Router::new();
    for r in table() {
        match r.kind {
            Kind::Json => json = json.route(r.path, r.handler),
            Kind::Stream => streams = streams.route(r.path, r.handler),
        }
    }
    let json =
        json.layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout));
    streams
        .merge(json)
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), request::read_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), request::check_request))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::rate_limit))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}
