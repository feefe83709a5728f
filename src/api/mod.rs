//! The HTTP API: axum routes over the store (read pool), the live fleet and the SQL sandbox —
//! JSON, the SSE stream, exports, metrics and the embedded dashboard page — served by our own
//! hyper accept loop (header-read timeout, connection cap, graceful stop).
//!
//! Routes are listed in `routes()` and described in `openapi.json`; a test keeps the two equal.

pub mod alerts;
mod blocks;
mod dashboard;
mod export;
mod guard;
mod metrics;
mod ops;
mod providers;
pub mod sandbox;
mod serve;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fleet::Fleet;
use crate::model::TelemetrySink;
use crate::store::{Store, StoreError};
pub use sandbox::{Sandbox, SandboxError, SandboxLimits};

/// What the process says about itself: a word (`ok`, `degraded`, `storage_full`,
/// `reorg_too_deep`) and the reason.
pub type HealthFn = Arc<dyn Fn() -> (crate::model::HealthState, String) + Send + Sync>;

/// The running pipeline, when the API serves a live process (absent for `serve --db`).
#[derive(Clone)]
pub struct Live {
    pub fleet: Arc<Fleet>,
    pub health: HealthFn,
    pub telemetry: TelemetrySink,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// How the API behaves (from the `[api]` config table).
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub api_key: Option<String>,
    pub rate_limit_rps: f64,
    pub rate_limit_burst: u32,
    pub rate_limit_loopback: bool,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub ready_max_lag_blocks: u64,
    pub sql: SandboxLimits,
    pub stream_max_lag_blocks: u64,
    pub stream_send_timeout: Duration,
    /// The effective configuration with secrets redacted (`GET /v1/admin/config`).
    pub config_redacted: serde_json::Value,
}

impl ApiOptions {
    /// From the `[api]` table and the resolved key.
    pub fn from_config(
        c: &crate::config::ApiConfig,
        api_key: Option<String>,
        config_redacted: serde_json::Value,
    ) -> Self {
        Self {
            api_key,
            rate_limit_rps: c.rate_limit_rps,
            rate_limit_burst: c.rate_limit_burst,
            rate_limit_loopback: c.rate_limit_loopback,
            max_body_bytes: c.max_body_bytes,
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            max_connections: c.max_connections,
            ready_max_lag_blocks: c.ready_max_lag_blocks,
            sql: SandboxLimits::from_api(c),
            stream_max_lag_blocks: c.stream_max_lag_blocks,
            stream_send_timeout: Duration::from_millis(c.stream_send_timeout_ms.max(1)),
            config_redacted,
        }
    }
}

impl ApiOptions {
    /// From the whole configuration: `[api]`, the key with `${VAR}` expanded from `env`, and
    /// the redacted config for `/v1/admin/config`.
    pub fn resolve(
        config: &crate::config::Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let key = config.api_key(env)?;
        Ok(Self::from_config(&config.api, key, config.redacted()))
    }
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self::from_config(&crate::config::ApiConfig::default(), None, serde_json::Value::Null)
    }
}

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct ApiState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Store,
    live: Option<Live>,
    opts: ApiOptions,
    sandbox: Sandbox,
    limiter: guard::PeerLimiter,
    prometheus: Option<::metrics_exporter_prometheus::PrometheusHandle>,
    cancel: CancellationToken,
    /// The last telemetry windows computed for `/v1/providers` (reused for up to a second).
    windows_cache: providers::WindowsCache,
    /// Concurrent `/v1/export` streams (each holds a blocking thread).
    exports: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// State over `store` (and the live pipeline when there is one).
    pub fn new(store: Store, live: Option<Live>, opts: ApiOptions) -> Self {
        let sandbox = Sandbox::new(store.path(), store.access(), opts.sql.clone());
        let limiter = guard::PeerLimiter::new(opts.rate_limit_rps, opts.rate_limit_burst, opts.rate_limit_loopback);
        Self(Arc::new(Inner {
            store,
            live,
            opts,
            sandbox,
            limiter,
            prometheus: metrics::install(),
            cancel: CancellationToken::new(),
            windows_cache: providers::WindowsCache::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(2)),
        }))
    }

    /// The SQL sandbox (tests check its connections after an attack).
    pub fn sandbox(&self) -> &Sandbox {
        &self.0.sandbox
    }
}

/// Errors a route answers with: a status and `{"error": {"code", "message"}}`.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("a valid API key is required (Authorization: Bearer KEY)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    QueryTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::QueryTimeout(_) => (StatusCode::BAD_REQUEST, "query_timeout"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "read_only"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() && !matches!(self, Self::Busy(_) | Self::Unavailable(_)) {
            tracing::warn!(error = %self, "api error");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        let mut resp = (status, Json(body)).into_response();
        let retry = match self {
            Self::RateLimited(s) => Some(s.max(1)),
            Self::Busy(_) => Some(1),
            _ => None,
        };
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReadOnly => Self::Conflict(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let m = e.to_string();
        match e {
            SandboxError::NotOneStatement
            | SandboxError::NotReadOnly
            | SandboxError::Sql(_)
            | SandboxError::Param { .. } => Self::BadRequest(m),
            SandboxError::Denied(_) => Self::Forbidden(m),
            SandboxError::Timeout(_) => Self::QueryTimeout(m),
            SandboxError::TooLarge(_) | SandboxError::TooBig(_) => Self::TooLarge(m),
            SandboxError::Busy(_) => Self::Busy(m),
            SandboxError::Internal(_) => Self::Internal(m),
        }
    }
}

/// Why the API could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: a non-loopback address needs an API key ([api] api_key)")]
    NeedsKey(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// May the API listen on `addr` with these options? A non-loopback address needs a key. Checked
/// again by [`ApiServer::start`]; callers check first, before they open anything.
pub fn check_listen(addr: SocketAddr, opts: &ApiOptions) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() && opts.api_key.is_none() {
        return Err(ServeError::NeedsKey(addr));
    }
    Ok(())
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
    state: ApiState,
}

impl ApiServer {
    /// Bind `addr` and serve in the background until `stop` (or the parent token).
    pub async fn start(addr: SocketAddr, state: ApiState, parent: &CancellationToken) -> Result<Self, ServeError> {
        check_listen(addr, &state.0.opts)?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        let cancel = parent.child_token();
        let tasks = TaskTracker::new();
        let router = routes(state.clone());
        let opts = serve::ServeOptions {
            header_read_timeout: state.0.opts.header_read_timeout,
            max_connections: state.0.opts.max_connections,
        };
        let c = cancel.clone();
        let stream_cancel = state.0.cancel.clone();
        let t = tasks.clone();
        tasks.spawn(async move {
            serve::serve(listener, router, opts, c.clone(), t).await;
            stream_cancel.cancel();
        });
        tracing::info!(%addr, "api listening");
        Ok(Self { addr, cancel, tasks, state })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state the routes share.
    pub fn state(&self) -> &ApiState {
        &self.state
    }

    /// Stop accepting, end streams, let in-flight requests finish (≤ 5 s).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.state.0.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(6), self.tasks.wait()).await.is_err() {
            tracing::warn!("api connections did not close within 6 s");
        }
    }
}

/// Every route. JSON routes get the per-route timeout; the stream does not.
pub fn routes(state: ApiState) -> axum::Router {
    use axum::routing::{get, post};
    let timeout = state.0.opts.request_timeout;
    let body_limit = state.0.opts.max_body_bytes;
    let json = axum::Router::new()
        .route("/v1/blocks", get(blocks::list))
        .route("/v1/blocks/latest", get(blocks::latest))
        .route("/v1/blocks/{id}", get(blocks::one))
        .route("/v1/blocks/{id}/transactions", get(blocks::transactions))
        .route("/v1/transactions/{hash}", get(blocks::transaction))
        .route("/v1/reorgs", get(blocks::reorgs))
        .route("/v1/gaps", get(blocks::gaps))
        .route("/v1/providers", get(providers::list))
        .route("/v1/providers/{name}", get(providers::one))
        .route("/v1/providers/{name}/requests", get(providers::requests))
        .route("/v1/alerts", get(ops::alerts))
        .route("/v1/sql", post(ops::sql))
        .route("/v1/admin/config", get(ops::admin_config))
        .route("/v1/admin/checkpoint", post(ops::admin_checkpoint))
        .route("/v1/events", get(dashboard::events))
        .route("/v1/latency", get(dashboard::latency))
        .route("/", get(dashboard::index))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(ops::openapi))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout));
    axum::Router::new()
        .route("/v1/stream/blocks", get(stream::blocks))
        .route("/v1/export/{table}", get(export::export))
        .merge(json)
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::rate_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit))
        .with_state(state)
}

/// The paths `routes()` serves, as written in `openapi.json` (for the consistency test).
pub const ROUTES: &[&str] = &[
    "/v1/blocks",
    "/v1/blocks/latest",
    "/v1/blocks/{id}",
    "/v1/blocks/{id}/transactions",
    "/v1/transactions/{hash}",
    "/v1/reorgs",
    "/v1/gaps",
    "/v1/providers",
    "/v1/providers/{name}",
    "/v1/providers/{name}/requests",
    "/v1/alerts",
    "/v1/sql",
    "/v1/admin/config",
    "/v1/admin/checkpoint",
    "/v1/stream/blocks",
    "/v1/export/{table}",
    "/v1/events",
    "/v1/latency",
    "/",
    "/dashboard.js",
    "/dashboard.css",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];
