//! The HTTP API: axum routes over the store (read pool), the live fleet and the SQL sandbox —
//! JSON, the SSE stream, exports, metrics and the embedded dashboard page — served by our own
//! hyper accept loop (header-read timeout, connection cap, graceful stop).
//!
//! Routes are listed in `routes()` and described in `openapi.json`; a test keeps the two equal.

pub mod alerts;
mod blocks;
mod body;
mod clients;
mod dashboard;
mod error;
mod export;
mod guard;
mod logs;
mod metrics;
mod ops;
mod providers;
mod request;
pub mod routes;
mod rpc;
pub mod sandbox;
mod serve;
mod sinks;
mod stream;
mod stream_logs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fleet::Fleet;
use crate::model::TelemetrySink;
use crate::store::Store;
pub use error::ApiError;
pub use routes::router as routes;
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
    /// Connections one peer IP may hold at once (loopback included).
    pub max_connections_per_ip: usize,
    /// Host names served besides the localhost names and the bound address ("*": any).
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to make cross-origin browser requests ("*": any).
    pub cors_origins: Vec<String>,
    pub ready_max_lag_blocks: u64,
    pub sql: SandboxLimits,
    pub stream_max_lag_blocks: u64,
    pub stream_send_timeout: Duration,
    /// The effective configuration with secrets redacted (`GET /v1/admin/config`).
    pub config_redacted: serde_json::Value,
    /// The JSON-RPC endpoint (`[rpc]`).
    pub rpc: crate::config::RpcConfig,
    /// `[[rpc.keys]]` with their secrets expanded.
    pub rpc_keys: Vec<crate::config::RpcKey>,
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
            max_connections_per_ip: c.max_connections_per_ip,
            allowed_hosts: c.allowed_hosts.clone(),
            cors_origins: c.cors_origins.clone(),
            ready_max_lag_blocks: c.ready_max_lag_blocks,
            sql: SandboxLimits::from_api(c),
            stream_max_lag_blocks: c.stream_max_lag_blocks,
            stream_send_timeout: Duration::from_millis(c.stream_send_timeout_ms.max(1)),
            config_redacted,
            rpc: crate::config::RpcConfig::default(),
            rpc_keys: Vec::new(),
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
        let key = config.api_key(&env)?;
        let rpc_keys = config.rpc.resolve_keys(&env)?;
        Ok(Self { rpc: config.rpc.clone(), rpc_keys, ..Self::from_config(&config.api, key, config.redacted()) })
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
    /// The address the server bound (for the `Host` check), once it has.
    bound: std::sync::OnceLock<SocketAddr>,
    /// What `/rpc` last read of the stored tip and chain id.
    rpc_stored: rpc::StoredCache,
    /// The `/rpc` clients' keys, rates and methods.
    rpc_keys: rpc::keys::KeyRing,
    /// One permit per open `/rpc` WebSocket.
    ws_slots: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    /// State over `store` (and the live pipeline when there is one).
    pub fn new(store: Store, live: Option<Live>, opts: ApiOptions) -> Self {
        let sandbox = Sandbox::new(store.path(), store.access(), opts.sql.clone());
        let limiter = guard::PeerLimiter::new(opts.rate_limit_rps, opts.rate_limit_burst, opts.rate_limit_loopback);
        Self(Arc::new(Inner {
            store,
            live,
            sandbox,
            limiter,
            prometheus: metrics::install(),
            cancel: CancellationToken::new(),
            windows_cache: providers::WindowsCache::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(2)),
            bound: std::sync::OnceLock::new(),
            rpc_stored: rpc::StoredCache::default(),
            rpc_keys: rpc::keys::KeyRing::new(&opts.rpc_keys, opts.rpc.anonymous),
            ws_slots: Arc::new(tokio::sync::Semaphore::new(opts.rpc.max_ws_connections)),
            opts,
        }))
    }

    /// The SQL sandbox (tests check its connections after an attack).
    pub fn sandbox(&self) -> &Sandbox {
        &self.0.sandbox
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
        let _ = state.0.bound.set(addr);
        let cancel = parent.child_token();
        let tasks = TaskTracker::new();
        let router = routes(state.clone());
        let opts = serve::ServeOptions {
            header_read_timeout: state.0.opts.header_read_timeout,
            max_connections: state.0.opts.max_connections,
            max_connections_per_ip: state.0.opts.max_connections_per_ip,
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
