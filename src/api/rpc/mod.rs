//! `/rpc`: a standard JSON-RPC 2.0 endpoint over HTTP (single calls, batches, notifications)
//! and WebSocket (the same, plus subscriptions). What the store holds verified is answered from
//! it, byte for byte as the node sent it; the rest goes through the fleet (selection, retries,
//! breakers, budgets, telemetry), writes to exactly one provider. `X-Blockstreamer-Source`
//! says who answered: `store` or a provider. Named keys set each client's rate and methods.

mod envelope;
mod forward;
pub(super) mod keys;
mod local;
mod params;
mod subscribe;
pub(super) mod ws;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::value::RawValue;

use super::ApiState;
use crate::config::RpcHead;
use crate::model::{ClientCall, ClientOutcome, TelemetryEvent};
use envelope::{Call, RpcError, code};
use local::{Heads, Local, View};

/// Calls of one batch run at most this many at a time (in order in the response).
const BATCH_CONCURRENCY: usize = 16;

/// Who answered a call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Store,
    Provider(String),
    /// Refused or malformed before anyone was asked.
    Endpoint,
}

impl Source {
    fn as_str(&self) -> &str {
        match self {
            Self::Store => "store",
            Self::Provider(p) => p,
            Self::Endpoint => "blockstreamer",
        }
    }
}

/// One call's response text (`None` for a notification) and who answered.
struct Reply {
    text: Option<String>,
    source: Source,
}

/// `POST /rpc`.
pub(super) async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    http(&state, None, &headers, &body).await
}

/// `POST /rpc/{key}`: the key in the URL, for clients that take only a URL.
pub(super) async fn handle_keyed(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    http(&state, Some(&key), &headers, &body).await
}

async fn http(state: &ApiState, key: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Response {
    let client = match state.0.rpc_keys.client(key, headers) {
        Ok(c) => c,
        Err(r) => return refused(&r),
    };
    let a = answer(state, &client, None, body).await;
    let mut resp = respond(a.body, &a.sources);
    if let Some(wait) = a.retry_after {
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
    }
    resp
}

/// A request refused before any call ran (unknown key): 401 with the JSON-RPC error.
fn refused(r: &keys::Refusal) -> Response {
    metrics::counter!("blockstreamer_rpc_refused_total", "reason" => "unauthorized").increment(1);
    let body = envelope::error(None, &r.error());
    (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body)
        .into_response()
}

/// A request answered: the response text (`None`: only notifications), who answered, the
/// subscriptions to start once the text is sent, and `Retry-After` when over the key's rate.
struct Answered {
    body: Option<String>,
    sources: Vec<Source>,
    ready: Vec<tokio::sync::oneshot::Sender<()>>,
    retry_after: Option<u64>,
}

impl Answered {
    fn endpoint(text: String) -> Self {
        Self { body: Some(text), sources: vec![Source::Endpoint], ready: Vec::new(), retry_after: None }
    }
}

/// Answer one request's text (a call or a batch) for `client`, over HTTP or a WebSocket.
async fn answer(state: &ApiState, client: &keys::Client, ws: Option<&Arc<ws::Conn>>, body: &[u8]) -> Answered {
    let Ok(text) = std::str::from_utf8(body) else {
        return Answered::endpoint(envelope::error(None, &RpcError::new(code::PARSE_ERROR, "request is not UTF-8")));
    };
    let Ok(req) = serde_json::from_str::<&RawValue>(text) else {
        let e = RpcError::new(code::PARSE_ERROR, "parse error: request is not JSON");
        return Answered::endpoint(envelope::error(None, &e));
    };
    let batch = req.get().starts_with('[');
    let calls: Vec<&RawValue> = if batch {
        let Ok(calls) = serde_json::from_str::<Vec<&RawValue>>(req.get()) else {
            let e = RpcError::new(code::PARSE_ERROR, "parse error: batch is not an array");
            return Answered::endpoint(envelope::error(None, &e));
        };
        let max = state.0.opts.rpc.max_batch;
        if calls.is_empty() || calls.len() > max {
            let e = RpcError::new(
                code::INVALID_REQUEST,
                format!("a batch holds 1 to {max} calls; this one has {}", calls.len()),
            );
            return Answered::endpoint(envelope::error(None, &e));
        }
        calls
    } else {
        vec![req]
    };
    // Read once the request is known to be well formed: one `latest` for all its calls.
    let mut parts = ViewParts::now(state, client, ws).await;
    parts.batch_size = u32::try_from(calls.len()).unwrap_or(u32::MAX);
    if let Err(r) = state.0.rpc_keys.charge(client, parts.batch_size) {
        let wait = match &r {
            keys::Refusal::RateLimited { wait_secs, .. } => *wait_secs,
            keys::Refusal::Unauthorized(_) => 1,
        };
        metrics::counter!("blockstreamer_rpc_refused_total", "reason" => "rate_limited").increment(1);
        let replies = calls.iter().map(|c| refuse(state, &parts, c, &r.error())).collect();
        return Answered { retry_after: Some(wait), ..joined(state, replies, batch, Vec::new()) };
    }
    // Boxed with one named lifetime: the stream's closure is otherwise not general enough for axum.
    let futs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + '_>>> =
        calls.iter().map(|c| Box::pin(one(state, &parts, c)) as _).collect();
    let replies: Vec<Reply> = futures::stream::iter(futs).buffered(BATCH_CONCURRENCY).collect().await;
    let ready = parts.ready.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
    joined(state, replies, batch, ready)
}

/// The response to a request from its calls' replies (a batch: their array, in order).
fn joined(
    state: &ApiState,
    replies: Vec<Reply>,
    batch: bool,
    ready: Vec<tokio::sync::oneshot::Sender<()>>,
) -> Answered {
    if !batch {
        let (body, sources) = replies.into_iter().next().map_or((None, Vec::new()), |r| (r.text, vec![r.source]));
        return Answered { body, sources, ready, retry_after: None };
    }
    let limit = state.0.opts.rpc.max_response_bytes;
    let mut out = String::from("[");
    let mut sources = Vec::new();
    for r in replies {
        let Some(t) = r.text else { continue };
        if out.len() + t.len() > limit {
            let e = RpcError::new(
                code::LIMIT,
                format!("response size exceeded: over {limit} bytes ([rpc] max_response_bytes)"),
            );
            return Answered::endpoint(envelope::error(None, &e));
        }
        local::push_item(&mut out, &t);
        sources.push(r.source);
    }
    out.push(']');
    Answered { body: (out.len() > 2).then_some(out), sources, ready, retry_after: None }
}

/// One call refused with `e` before it ran (over the key's rate), recorded as refused.
fn refuse(state: &ApiState, parts: &ViewParts<'_>, raw: &RawValue, e: &RpcError) -> Reply {
    let started = std::time::Instant::now();
    let (id, method) = match envelope::call(raw) {
        Ok(c) => (c.id.is_some().then_some(c.id), forward::name(&c.method)),
        Err((id, _)) => (Some(id), "invalid"),
    };
    let text = id.map(|id| envelope::error(id, e));
    record(state, parts, (method, &Source::Endpoint), started, Err(e), text.as_ref().map_or(0, String::len));
    Reply { text, source: Source::Endpoint }
}

/// What every call of one request sees: one `latest`, one chain id, one client.
struct ViewParts<'a> {
    client: &'a keys::Client,
    /// The WebSocket connection the request came on, if any (subscriptions need one).
    ws: Option<&'a Arc<ws::Conn>>,
    /// Subscriptions started by this request, to release once its reply is queued.
    ready: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
    /// Calls in the request.
    batch_size: u32,
    heads: Heads,
    fleet: Option<u64>,
}

/// The stored tip and chain id, read at most once per commit (and per `STORED_TTL`, for the
/// commits of another process, which `serve` does not hear about).
#[derive(Debug, Default)]
pub(super) struct StoredCache(std::sync::Mutex<Option<Stored>>);

/// When it was read, at which change count, the stored tip and the chain id.
type Stored = (std::time::Instant, u64, Option<u64>, Option<u64>);

const STORED_TTL: std::time::Duration = std::time::Duration::from_millis(250);

impl StoredCache {
    async fn get(&self, store: &crate::store::Store) -> (Option<u64>, Option<u64>) {
        let change = *store.subscribe_changes().borrow();
        if let Ok(g) = self.0.lock()
            && let Some((at, c, stored, chain)) = *g
            && c == change
            && at.elapsed() < STORED_TTL
        {
            return (stored, chain);
        }
        let stored = store.stored_tip().await.ok().flatten().map(|t| t.number);
        let chain = store.meta("chain_id").await.ok().flatten().and_then(|c| u64::try_from(c).ok());
        if let Ok(mut g) = self.0.lock() {
            *g = Some((std::time::Instant::now(), change, stored, chain));
        }
        (stored, chain)
    }
}

impl<'a> ViewParts<'a> {
    async fn now(state: &ApiState, client: &'a keys::Client, ws: Option<&'a Arc<ws::Conn>>) -> Self {
        let (stored, chain_id) = state.0.rpc_stored.get(&state.0.store).await;
        let fleet = state.0.live.as_ref().and_then(|l| l.fleet.head()).map(|h| h.number);
        let opts = &state.0.opts.rpc;
        let latest = match (opts.head, stored, fleet) {
            (_, s, None) => s,
            // The store is fresh enough to be `latest`; else `latest` is the fleet's.
            (RpcHead::Stored, Some(s), Some(f)) if f.saturating_sub(s) <= opts.max_lag_blocks => Some(s),
            (_, _, f) => f,
        };
        Self {
            client,
            ws,
            ready: std::sync::Mutex::default(),
            batch_size: 1,
            heads: Heads { chain_id, latest, stored },
            fleet,
        }
    }
}

/// Answer one call object, and record it (`client_requests`, `/metrics`).
async fn one(state: &ApiState, parts: &ViewParts<'_>, raw: &RawValue) -> Reply {
    let started = std::time::Instant::now();
    let call = match envelope::call(raw) {
        Ok(c) => c,
        Err((id, e)) => {
            let text = envelope::error(id, &e);
            record(state, parts, ("invalid", &Source::Endpoint), started, Err(&e), text.len());
            return Reply { text: Some(text), source: Source::Endpoint };
        }
    };
    let (answer, source) = dispatch(state, parts, &call).await;
    let text = call.id.is_some().then(|| match &answer {
        Ok(result) => envelope::result(call.id, result),
        Err(e) => envelope::error(call.id, e),
    });
    let bytes = text.as_ref().map_or(0, String::len);
    record(state, parts, (forward::name(&call.method), &source), started, answer.as_ref().map(|_| ()), bytes);
    Reply { text, source }
}

/// One `client_requests` row (live runs: `serve` writes nothing) and the `/metrics` samples.
fn record(
    state: &ApiState,
    parts: &ViewParts<'_>,
    (method, source): (&'static str, &Source),
    started: std::time::Instant,
    answer: Result<(), &RpcError>,
    bytes: usize,
) {
    let outcome = match (answer, source) {
        (Ok(()), _) => ClientOutcome::Ok,
        (Err(_), Source::Endpoint) => ClientOutcome::Refused,
        (Err(_), _) => ClientOutcome::RpcError,
    };
    let elapsed = started.elapsed();
    let key = parts.client.name().unwrap_or("").to_string();
    metrics::counter!("blockstreamer_rpc_calls_total", "method" => method, "source" => source.as_str().to_string(), "outcome" => outcome.as_str(), "key" => key)
        .increment(1);
    metrics::histogram!("blockstreamer_rpc_call_duration_seconds", "method" => method).record(elapsed.as_secs_f64());
    let Some(live) = &state.0.live else { return };
    live.telemetry.record(TelemetryEvent::Client(ClientCall {
        ts_ms: crate::types::now_ms(),
        key_name: parts.client.name().map(str::to_string),
        method,
        source: source.as_str().to_string(),
        latency_us: crate::types::micros(elapsed),
        outcome,
        rpc_code: answer.err().map(|e| e.code),
        bytes: bytes as u64,
        batch_size: parts.batch_size,
    }));
}

async fn dispatch(state: &ApiState, parts: &ViewParts<'_>, call: &Call<'_>) -> (Result<String, RpcError>, Source) {
    let method = call.method.as_str();
    if let Err(e) = parts.client.permits(method, forward::is_write(method)) {
        return (Err(e), Source::Endpoint);
    }
    if let Some(conn) = parts.ws {
        match method {
            "eth_subscribe" => return (ws::subscribe(state, conn, call.params, &parts.ready), Source::Store),
            "eth_unsubscribe" => return (ws::unsubscribe(conn, call.params), Source::Store),
            _ => {}
        }
    }
    if let Some(why) = forward::refused(method) {
        return (Err(RpcError::new(code::METHOD_NOT_FOUND, why)), Source::Endpoint);
    }
    let local = local::METHODS.contains(&method);
    let need = if local {
        let view = View { store: &state.0.store, opts: &state.0.opts.rpc, heads: parts.heads };
        match view.answer(method, call.params).await {
            Ok(Local::Answer(text)) => return (Ok(text), Source::Store),
            Ok(Local::Forward(need)) => need,
            Err(e) => return (Err(e), Source::Endpoint),
        }
    } else {
        match forward::pin(method, call.params, parts.fleet) {
            Ok(need) => need,
            Err(e) => return (Err(e), Source::Endpoint),
        }
    };
    let Some(live) = &state.0.live else {
        // `serve` over a file: what the store does not hold, nobody here can tell.
        return if local {
            (Ok("null".into()), Source::Store)
        } else {
            let e =
                RpcError::new(code::SERVER, format!("{method} needs a provider; `serve` answers from the file only"));
            (Err(e), Source::Endpoint)
        };
    };
    forward::send(&live.fleet, call, need).await
}

/// Raw JSON from a literal (unit tests).
#[cfg(test)]
fn test_raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_string()).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn respond(body: Option<String>, sources: &[Source]) -> Response {
    let mut names: Vec<&str> = sources.iter().map(Source::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let source = HeaderValue::from_str(&names.join(",")).unwrap_or(HeaderValue::from_static("blockstreamer"));
    let Some(body) = body else {
        return (StatusCode::NO_CONTENT, [("x-blockstreamer-source", source)]).into_response();
    };
    let json = HeaderValue::from_static("application/json");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, json), (header::HeaderName::from_static("x-blockstreamer-source"), source)],
        body,
    )
        .into_response()
}
