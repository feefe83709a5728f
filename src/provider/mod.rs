//! One upstream JSON-RPC provider: a jsonrpsee HTTP client with per-method timeouts and size
//! caps, outcome classification, and one telemetry sample for every call it makes.

mod batch;
mod capability;
mod error;
pub mod forward;
pub mod http;
pub mod logs;
pub mod receipts;
mod receipts_rpc;
pub use capability::{Capabilities, Support};
mod spec;
pub mod wire;
pub mod ws;

pub use error::{ProviderError, retry_hint};
pub use spec::{CreditPrices, ProviderSpec, SecretUrl};
pub use wire::Reject;
pub use ws::HeadSubscription;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use jsonrpsee::core::ClientError;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HttpBackend, HttpClient, HttpClientBuilder, RpcService};
use serde_json::value::RawValue;

use crate::model::{Block, Head, Outcome, ProviderId, RequestSample, TelemetryEvent, TelemetrySink};
use crate::types::{micros, now_ms};
use http::{MetaLayer, ResponseMeta, with_meta};
use wire::{DecodeOptions, Want};

/// Ids for the per-call debug events (`request_id`), unique within the process.
static NEXT_REQUEST_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Per-call context the fleet passes down, recorded in telemetry.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallCtx {
    pub attempt: u32,
    pub hedged: bool,
}

/// The jsonrpsee client with our HTTP layer under it.
type Client = HttpClient<RpcService<http::MetaService<HttpBackend>>>;

/// One upstream. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Provider {
    id: ProviderId,
    spec: ProviderSpec,
    head_client: ws::Rpc,
    block_client: ws::Rpc,
    telemetry: TelemetrySink,
    /// Cleared when the provider refuses JSON-RPC batches; single calls are used from then on.
    batches_ok: AtomicBool,
    /// What the provider was found to support.
    caps: capability::Learned,
}

/// Methods we call, as `'static` names for telemetry.
pub mod method {
    pub const CHAIN_ID: &str = "eth_chainId";
    pub const BLOCK_NUMBER: &str = "eth_blockNumber";
    pub const SUBSCRIBE: &str = "eth_subscribe";
    pub const BLOCK_BY_NUMBER: &str = "eth_getBlockByNumber";
    pub const BLOCK_BY_HASH: &str = "eth_getBlockByHash";
    pub const BLOCK_RECEIPTS: &str = "eth_getBlockReceipts";
    pub const TX_RECEIPT: &str = "eth_getTransactionReceipt";
    pub const LOGS: &str = "eth_getLogs";
}

impl Provider {
    /// Build the clients. Fails only on a malformed URL.
    pub fn new(id: ProviderId, spec: ProviderSpec, telemetry: TelemetrySink) -> Result<Self, ProviderError> {
        let build = |timeout: Duration, max: u32| {
            HttpClientBuilder::default()
                // Our own per-call deadline is the real one; this is a backstop.
                .request_timeout(timeout + Duration::from_secs(1))
                .max_response_size(max)
                .max_request_size(1 << 20)
                .set_http_middleware(tower::ServiceBuilder::new().layer(MetaLayer))
                // No jsonrpsee logger: its default one re-serialises every request and every
                // response (a full copy of each block batch) to build trace lines, even when
                // trace is off. Each call gets our own telemetry row and debug event instead.
                .set_rpc_middleware(RpcServiceBuilder::new())
                .build(spec.url.expose())
                .map_err(|e| {
                    ProviderError::Connect(format!("bad URL for {}: {}", spec.name, redact_err(&e, &spec.url)))
                })
        };
        let (head_client, block_client) = if ws::is_ws(spec.url.expose()) {
            let link = |t: Duration, max: u32| ws::Rpc::Ws(ws::WsLink::new(spec.url.clone(), t, max));
            (link(spec.head_timeout, spec.head_max_bytes), link(spec.block_timeout, spec.block_max_bytes))
        } else {
            (
                ws::Rpc::Http(build(spec.head_timeout, spec.head_max_bytes)?),
                ws::Rpc::Http(build(spec.block_timeout, spec.block_max_bytes)?),
            )
        };
        Ok(Self {
            id,
            spec,
            head_client,
            block_client,
            telemetry,
            batches_ok: AtomicBool::new(true),
            caps: capability::Learned::default(),
        })
    }

    /// The provider's id (stable for the process; the store maps it to `providers.id`).
    pub fn id(&self) -> ProviderId {
        self.id
    }

    /// Credits one call of `method` costs at this provider.
    pub fn credits(&self, method: &str) -> u32 {
        self.spec.credits.cost(method)
    }

    /// Configured name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The URL with secrets removed.
    pub fn url_redacted(&self) -> String {
        self.spec.url.redacted()
    }

    fn sample(&self, method: &'static str, block_number: Option<u64>, started: Instant, ctx: CallCtx) -> RequestSample {
        RequestSample {
            ts_ms: now_ms(),
            provider: self.id,
            method,
            block_number,
            latency_us: micros(started.elapsed()),
            outcome: Outcome::Ok,
            http_status: None,
            rpc_code: None,
            bytes: None,
            head_reported: None,
            attempt: ctx.attempt.max(1),
            hedged: ctx.hedged,
            batch_size: 1,
            error: None,
            credits: self.spec.credits.cost(method),
        }
    }

    fn fail_sample(&self, s: &mut RequestSample, e: &ProviderError) {
        s.outcome = e.outcome();
        s.rpc_code = e.rpc_code();
        s.error = Some(truncate_err(&e.to_string()));
    }

    /// One call; returns the raw result. Records exactly one telemetry sample.
    async fn call(
        &self,
        client: &ws::Rpc,
        timeout: Duration,
        method: &'static str,
        params: ArrayParams,
        block_number: Option<u64>,
        ctx: CallCtx,
    ) -> (Result<Box<RawValue>, ProviderError>, RequestSample) {
        let started = Instant::now();
        let guard = InFlight { provider: self, method, numbers: vec![block_number], started, ctx, done: false };
        let fut = client.request(method, params);
        let (res, meta) = with_meta(tokio::time::timeout(timeout, fut)).await;
        guard.finish();
        let mut s = self.sample(method, block_number, started, ctx);
        s.http_status = meta.status;
        let res = match res {
            Err(_) => Err(ProviderError::Timeout(timeout)),
            Ok(Err(e)) => Err(self.classify(e, meta)),
            Ok(Ok(raw)) if raw.get() == "null" => Err(ProviderError::Null),
            Ok(Ok(raw)) => Ok(raw),
        };
        match &res {
            Ok(raw) => s.bytes = Some(meta.content_length.unwrap_or(raw.get().len() as u64)),
            Err(e) => {
                s.bytes = meta.content_length;
                self.fail_sample(&mut s, e);
            }
        }
        (res, s)
    }

    fn classify(&self, e: ClientError, meta: ResponseMeta) -> ProviderError {
        match e {
            ClientError::RequestTimeout => ProviderError::Timeout(self.spec.block_timeout),
            ClientError::Call(obj) => ProviderError::Rpc {
                code: obj.code(),
                message: obj.message().chars().take(200).collect(),
                retry_after: meta.retry_after.or_else(|| retry_hint(obj.message())),
            },
            ClientError::ParseError(p) => ProviderError::Invalid(format!("unparseable body: {p}")),
            ClientError::InvalidRequestId(id) => ProviderError::Invalid(format!("wrong response id: {id}")),
            ClientError::Transport(t) => match meta.status {
                Some(status) if !(200..300).contains(&status) => {
                    ProviderError::Http { status, retry_after: meta.retry_after }
                }
                Some(_) => {
                    let text = t.to_string();
                    if ["too large", "too big", "TooLarge", "exceeded"].iter().any(|k| text.contains(k)) {
                        ProviderError::TooLarge(self.spec.block_max_bytes)
                    } else {
                        // The status line came but the body broke: truncated or reset mid-body.
                        ProviderError::Invalid(format!("body: {}", redact(&text, &self.spec.url)))
                    }
                }
                None => ProviderError::Connect(redact(&t.to_string(), &self.spec.url)),
            },
            // A WebSocket that dropped: the next call reconnects.
            ClientError::RestartNeeded(e) => ProviderError::Connect(redact(&e.to_string(), &self.spec.url)),
            other => ProviderError::Invalid(redact(&other.to_string(), &self.spec.url)),
        }
    }

    fn emit(&self, s: RequestSample) {
        #[allow(clippy::cast_precision_loss)]
        let secs = s.latency_us as f64 / 1e6;
        // One debug event per call (`RUST_LOG=blockstreamer::rpc=debug`), with an id that is
        // unique in this process so a call can be followed through the logs. The field values
        // are only computed when the event is enabled: nothing is added to the call path otherwise.
        tracing::debug!(
            target: "blockstreamer::rpc",
            request_id = NEXT_REQUEST_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            provider = %self.spec.name,
            method = s.method,
            height = s.block_number,
            latency_ms = secs * 1000.0,
            outcome = s.outcome.as_str(),
            http_status = s.http_status,
            rpc_code = s.rpc_code,
            attempt = s.attempt,
            hedged = s.hedged,
            batch = s.batch_size,
            "rpc call"
        );
        // Prometheus view of the same sample (a no-op until the API installs a recorder).
        let name = self.spec.name.clone();
        metrics::counter!("blockstreamer_provider_requests_total", "provider" => name.clone(), "method" => s.method, "outcome" => s.outcome.as_str())
            .increment(1);
        if s.credits > 0 {
            metrics::counter!("blockstreamer_provider_credits_total", "provider" => name.clone())
                .increment(u64::from(s.credits));
        }
        metrics::histogram!("blockstreamer_provider_request_duration_seconds", "provider" => name, "method" => s.method)
            .record(secs);
        self.telemetry.record(TelemetryEvent::Request(s));
    }

    /// Record the sample of a call whose result was then decoded: a decode failure turns an
    /// `ok` transport outcome into the decode error's class. `annotate` adds what a success tells.
    fn settle<T>(
        &self,
        out: Result<T, ProviderError>,
        mut s: RequestSample,
        annotate: impl FnOnce(&T, &mut RequestSample),
    ) -> Result<T, ProviderError> {
        match &out {
            Ok(v) => annotate(v, &mut s),
            Err(e) if s.outcome == Outcome::Ok => self.fail_sample(&mut s, e),
            Err(_) => {}
        }
        self.emit(s);
        out
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self, ctx: CallCtx) -> Result<u64, ProviderError> {
        let (out, s) = self.quantity(method::CHAIN_ID, "chainId", "chain id", ctx).await;
        self.settle(out, s, |_, _| {})
    }

    /// The provider's head height, from `eth_blockNumber` (the cheapest head poll: 10 credits
    /// at Alchemy against 16 for a header).
    pub async fn block_number(&self, ctx: CallCtx) -> Result<u64, ProviderError> {
        let (out, s) = self.quantity(method::BLOCK_NUMBER, "blockNumber", "block number", ctx).await;
        self.settle(out, s, |n, s| s.head_reported = Some(*n))
    }

    /// One parameterless call on the head client whose result is a hex quantity; `what` names
    /// it in the error when the answer is not one.
    async fn quantity(
        &self,
        method: &'static str,
        field: &'static str,
        what: &str,
        ctx: CallCtx,
    ) -> (Result<u64, ProviderError>, RequestSample) {
        let (res, s) =
            self.call(&self.head_client, self.spec.head_timeout, method, ArrayParams::new(), None, ctx).await;
        let out = res.and_then(|raw| {
            let text: &str =
                serde_json::from_str(raw.get()).map_err(|_| ProviderError::Invalid(format!("{what} {}", raw.get())))?;
            Ok(wire::quantity(field, text)?)
        });
        (out, s)
    }

    /// The WebSocket endpoint heads can be subscribed on: `ws_url`, or the URL itself when it
    /// is a ws:// one.
    pub fn ws_url(&self) -> Option<&SecretUrl> {
        self.spec.ws_url.as_ref().or_else(|| ws::is_ws(self.spec.url.expose()).then_some(&self.spec.url))
    }

    /// Subscribe to `newHeads` on [`ws_url`](Self::ws_url), over a connection of its own. The
    /// `eth_subscribe` call is one telemetry sample.
    pub async fn subscribe_heads(&self) -> Result<HeadSubscription, ProviderError> {
        let Some(url) = self.ws_url() else {
            return Err(ProviderError::Connect(format!("{} has no WebSocket URL", self.spec.name)));
        };
        let started = Instant::now();
        let ctx = CallCtx { attempt: 1, hedged: false };
        let res = ws::subscribe_heads(url, self.spec.head_timeout, self.spec.head_max_bytes).await;
        let mut s = self.sample(method::SUBSCRIBE, None, started, ctx);
        // Not `classify`: that redacts `url`, and the error may name `ws_url`.
        let out = res.map_err(|e| match e {
            ClientError::RequestTimeout => ProviderError::Timeout(self.spec.head_timeout),
            ClientError::Call(obj) => ProviderError::Rpc {
                code: obj.code(),
                message: obj.message().chars().take(200).collect(),
                retry_after: None,
            },
            other => ProviderError::Connect(redact(&other.to_string(), url)),
        });
        if let Err(e) = &out {
            self.fail_sample(&mut s, e);
        }
        self.emit(s);
        out
    }

    /// The provider's latest block header (number, hash, parent), from
    /// `eth_getBlockByNumber("latest", false)`: one call gives both the height and the hash,
    /// so a same-height reorg is visible from head polls alone. With `verify`, the header hash
    /// is recomputed: a forged head is a rejected block like any other.
    pub async fn head(&self, verify: bool, ctx: CallCtx) -> Result<Head, ProviderError> {
        let mut params = ArrayParams::new();
        push(&mut params, "latest");
        push(&mut params, false);
        let (res, s) =
            self.call(&self.head_client, self.spec.head_timeout, method::BLOCK_BY_NUMBER, params, None, ctx).await;
        let out = res.and_then(|raw| Ok(wire::decode_head(raw.get(), verify)?));
        self.settle(out, s, |h, s| s.head_reported = Some(h.number))
    }

    /// One block by number, validated.
    pub async fn block_by_number(
        &self,
        number: u64,
        opts: DecodeOptions,
        ctx: CallCtx,
    ) -> Result<Block, ProviderError> {
        let mut params = ArrayParams::new();
        push(&mut params, format!("{number:#x}"));
        push(&mut params, opts.full_transactions);
        let (res, s) = self
            .call(&self.block_client, self.spec.block_timeout, method::BLOCK_BY_NUMBER, params, Some(number), ctx)
            .await;
        let out = res.and_then(|raw| Ok(wire::decode_block(raw.get(), Want::Number(number), opts, self.id)?));
        self.settle(out, s, |_, _| {})
    }

    /// One block by hash, validated (the walk back through a reorg asks by hash).
    pub async fn block_by_hash(&self, hash: B256, opts: DecodeOptions, ctx: CallCtx) -> Result<Block, ProviderError> {
        let mut params = ArrayParams::new();
        push(&mut params, format!("{hash}"));
        push(&mut params, opts.full_transactions);
        let (res, s) =
            self.call(&self.block_client, self.spec.block_timeout, method::BLOCK_BY_HASH, params, None, ctx).await;
        let out = res.and_then(|raw| Ok(wire::decode_block(raw.get(), Want::Hash(hash), opts, self.id)?));
        self.settle(out, s, |b, s| s.block_number = Some(b.number))
    }

    /// Blocks `numbers` (consecutive or not) in one JSON-RPC batch when the provider allows it,
    /// else one call each. One result per number, in order; one telemetry sample per call.
    pub async fn blocks_by_number(
        &self,
        numbers: &[u64],
        opts: DecodeOptions,
        ctx: CallCtx,
    ) -> Vec<Result<Block, ProviderError>> {
        let heights: Vec<Option<u64>> = numbers.iter().map(|&n| Some(n)).collect();
        let params = |k: usize| {
            let mut p = ArrayParams::new();
            push(&mut p, format!("{:#x}", numbers[k]));
            push(&mut p, opts.full_transactions);
            p
        };
        let decode = |k: usize, raw: &str| Ok(wire::decode_block(raw, Want::Number(numbers[k]), opts, self.id)?);
        self.calls(method::BLOCK_BY_NUMBER, &heights, params, decode, ctx).await
    }
}

/// Emits a `cancelled` sample for each call still outstanding if the calling future is dropped
/// before it finished, so telemetry counts every request the provider saw.
struct InFlight<'a> {
    provider: &'a Provider,
    method: &'static str,
    numbers: Vec<Option<u64>>,
    started: Instant,
    ctx: CallCtx,
    done: bool,
}

impl InFlight<'_> {
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let size = u32::try_from(self.numbers.len()).unwrap_or(u32::MAX);
        for n in &self.numbers {
            let mut s = self.provider.sample(self.method, *n, self.started, self.ctx);
            s.outcome = Outcome::Cancelled;
            s.batch_size = size.max(1);
            self.provider.emit(s);
        }
    }
}

/// Errors that mean "this endpoint does not take batches" rather than "try again".
fn refuses_batches(e: &ProviderError) -> bool {
    match e {
        ProviderError::Http { status, .. } => matches!(status, 400 | 404 | 405 | 413 | 501),
        ProviderError::Rpc { code, message, .. } => *code == -32600 || message.to_ascii_lowercase().contains("batch"),
        _ => false,
    }
}

fn push<T: serde::Serialize>(params: &mut ArrayParams, v: T) {
    // Serialising a string, bool or hex literal cannot fail.
    let _ = params.insert(v);
}

fn truncate_err(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Remove the URL (which may hold a key) from an error text.
fn redact(text: &str, url: &SecretUrl) -> String {
    truncate_err(&text.replace(url.expose(), &url.redacted()))
}

fn redact_err(e: &ClientError, url: &SecretUrl) -> String {
    redact(&e.to_string(), url)
}
