//! The fault proxy: a small HTTP/1.1 server on raw TCP (so it can reset, truncate and drip
//! bytes) that forwards JSON-RPC to an upstream node and applies the engine's decisions.
//!
//! Admin routes on the same port: `GET /__fault/log` (every call seen, JSON), `DELETE
//! /__fault/log`, `GET /__fault/script`, `POST /__fault/script` (a JSON script, applied at once).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::http1::{Reply, Request, read_request, write_reply};
use super::rewrite::{self, Post, answer, call_height, call_method, error_answer, is_head_tag, logs_range, set_height};
use super::{Decision, Engine, Fault, HeadView, LoggedCall, Script};

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("bad upstream URL {0:?}: {1}")]
    Upstream(String, String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

type Upstream = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Largest upstream answer relayed.
const MAX_UPSTREAM: usize = 256 << 20;

#[derive(Debug)]
struct Inner {
    engine: Engine,
    upstream_uri: Mutex<http::Uri>,
    client: Upstream,
    accepted: AtomicU64,
    open: AtomicU64,
}

#[derive(Debug)]
struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A running fault proxy.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    running: Mutex<Option<Running>>,
}

impl FaultProxy {
    /// Listen on `listen` (use port 0 for any) and forward to `upstream` (http or https).
    pub async fn start(upstream: &str, listen: SocketAddr, script: Script) -> Result<Self, ProxyError> {
        let upstream_uri: http::Uri = upstream
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProxyError::Upstream(upstream.into(), e.to_string()))?;
        if upstream_uri.host().is_none() {
            return Err(ProxyError::Upstream(upstream.into(), "no host".into()));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| ProxyError::Upstream(upstream.into(), e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let inner = Arc::new(Inner {
            engine: Engine::new(script),
            upstream_uri: Mutex::new(upstream_uri),
            client,
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
        });
        let listener = TcpListener::bind(listen).await.map_err(|e| ProxyError::Listen(listen, e))?;
        let addr = listener.local_addr().map_err(|e| ProxyError::Listen(listen, e))?;
        let proxy = Self { addr, inner, running: Mutex::new(None) };
        proxy.spawn(listener);
        Ok(proxy)
    }

    fn spawn(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, self.inner.clone(), cancel.clone()));
        if let Ok(mut g) = self.running.lock() {
            *g = Some(Running { cancel, task });
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forward to another upstream from now on (a provider switching backends).
    pub fn set_upstream(&self, upstream: &str) -> Result<(), ProxyError> {
        let uri: http::Uri = upstream
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProxyError::Upstream(upstream.into(), e.to_string()))?;
        if let Ok(mut g) = self.inner.upstream_uri.lock() {
            *g = uri;
        }
        Ok(())
    }

    /// Replace the script; rule counters and the time window restart.
    pub fn set_script(&self, script: Script) {
        self.inner.engine.set_script(script);
    }

    /// Milliseconds since the proxy started (the clock of [`LoggedCall::at_ms`]).
    pub fn now_ms(&self) -> u64 {
        self.inner.engine.now_ms()
    }

    /// Every call seen so far.
    pub fn log(&self) -> Vec<LoggedCall> {
        self.inner.engine.log()
    }

    /// Forget the calls seen so far.
    pub fn clear_log(&self) {
        self.inner.engine.clear_log();
    }

    /// TCP connections accepted so far, and still open.
    pub fn connections(&self) -> (u64, u64) {
        (self.inner.accepted.load(Ordering::Relaxed), self.inner.open.load(Ordering::Relaxed))
    }

    /// Close the listener and every connection: clients now get "connection refused".
    pub async fn stop(&self) {
        let running = self.running.lock().ok().and_then(|mut g| g.take());
        if let Some(r) = running {
            r.cancel.cancel();
            let _ = r.task.await;
        }
    }

    /// Listen again on the same address after [`stop`](Self::stop).
    pub async fn resume(&self) -> Result<(), ProxyError> {
        let listener = TcpListener::bind(self.addr).await.map_err(|e| ProxyError::Listen(self.addr, e))?;
        self.spawn(listener);
        Ok(())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut g) = self.running.lock()
            && let Some(r) = g.take()
        {
            r.cancel.cancel();
            r.task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, cancel: CancellationToken) {
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        inner.accepted.fetch_add(1, Ordering::Relaxed);
        inner.open.fetch_add(1, Ordering::Relaxed);
        let (inner, cancel) = (inner.clone(), cancel.clone());
        conns.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = serve_conn(&inner, stream) => {}
            }
            inner.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

async fn serve_conn(inner: &Inner, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf).await {
        let reply =
            if req.path.starts_with("/__fault/") { admin(inner, &req) } else { process(inner, &req.body).await };
        let keep = write_reply(&mut stream, reply, !req.close).await;
        if !keep {
            return;
        }
    }
}

fn json_reply(status: u16, v: &Value) -> Reply {
    Reply::Plain { status, headers: Vec::new(), content_type: "application/json", body: v.to_string().into_bytes() }
}

fn admin(inner: &Inner, req: &Request) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/__fault/log") => match serde_json::to_value(inner.engine.log()) {
            Ok(v) => json_reply(200, &v),
            Err(e) => json_reply(500, &json!({ "error": e.to_string() })),
        },
        ("DELETE", "/__fault/log") => {
            inner.engine.clear_log();
            json_reply(200, &json!({ "ok": true }))
        }
        ("GET", "/__fault/script") => match serde_json::to_value(inner.engine.script()) {
            Ok(v) => json_reply(200, &v),
            Err(e) => json_reply(500, &json!({ "error": e.to_string() })),
        },
        ("POST", "/__fault/script") => match std::str::from_utf8(&req.body)
            .map_err(|e| e.to_string())
            .and_then(|t| Script::from_json(t).map_err(|e| e.to_string()))
        {
            Ok(s) => {
                let rules = s.rules.len();
                inner.engine.set_script(s);
                json_reply(200, &json!({ "ok": true, "rules": rules }))
            }
            Err(e) => json_reply(400, &json!({ "error": e })),
        },
        _ => json_reply(404, &json!({ "error": "unknown admin route" })),
    }
}

async fn upstream_post(inner: &Inner, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(inner.upstream_uri.lock().map_err(|_| "upstream lock poisoned".to_string())?.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = inner.client.request(req).await.map_err(|e| format!("upstream: {e}"))?;
    let status = resp.status().as_u16();
    let body =
        Limited::new(resp.into_body(), MAX_UPSTREAM).collect().await.map_err(|e| format!("upstream body: {e}"))?;
    Ok((status, body.to_bytes().to_vec()))
}

async fn upstream_head(inner: &Inner) -> Option<u64> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": [] }).to_string();
    let (_, bytes) = upstream_post(inner, body.into_bytes()).await.ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("result")?.as_str().and_then(rewrite::parse_quantity)
}

fn bad_gateway(e: &str) -> Reply {
    json_reply(502, &json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32603, "message": e } }))
}

/// Apply the script to one JSON-RPC request body, in phases: parse the calls, decide each
/// one's fault, answer at once what never reaches the upstream, answer or rewrite calls locally,
/// forward the rest in one request, rewrite the upstream's answers, then damage the bytes or the
/// delivery as the transport fault says.
async fn process(inner: &Inner, body: &[u8]) -> Reply {
    let Some((mut calls, batch)) = parse_calls(body) else {
        // Not JSON-RPC we understand: relay it untouched.
        return relay(inner, body.to_vec()).await;
    };
    let decisions = decide(inner, &calls, batch).await;
    let transport = decisions.iter().flatten().find(|d| d.fault.is_transport()).map(|d| d.fault.clone());
    if let Some(reply) = transport.as_ref().and_then(before_upstream) {
        return reply;
    }
    let (mut answers, posts) = answer_locally(inner, &mut calls, &decisions).await;
    if let Err(reply) = forward(inner, &calls, batch, &mut answers).await {
        return reply;
    }
    for (a, post) in answers.iter_mut().zip(&posts) {
        if let Some(a) = a {
            post.apply(a);
        }
    }
    let duplicate = decisions.iter().flatten().any(|d| d.fault == Fault::Duplicate);
    let out = rewrite::assemble(answers, batch, duplicate);
    let mut body = out.to_string().into_bytes();
    for d in decisions.iter().flatten() {
        rewrite::damage(&mut body, &d.fault);
    }
    deliver(transport.as_ref(), body, out)
}

/// The calls of a body and whether it was a batch; None when it is not JSON-RPC we understand.
fn parse_calls(body: &[u8]) -> Option<(Vec<Value>, bool)> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) if !a.is_empty() => Some((a, true)),
        Ok(v @ Value::Object(_)) => Some((vec![v], false)),
        _ => None,
    }
}

async fn relay(inner: &Inner, body: Vec<u8>) -> Reply {
    match upstream_post(inner, body).await {
        Ok((status, body)) => Reply::Plain { status, headers: Vec::new(), content_type: "application/json", body },
        Err(e) => bad_gateway(&e),
    }
}

/// Each call's decision (logged); sleeps for the longest `delay` drawn; a transport fault drawn
/// by any call is written against every call of the exchange in the log.
async fn decide(inner: &Inner, calls: &[Value], batch: bool) -> Vec<Option<Decision>> {
    let (decisions, logged): (Vec<Option<Decision>>, Vec<Option<usize>>) =
        calls.iter().map(|c| inner.engine.decide_logged(call_method(c), call_height(c), batch)).unzip();
    let delay = decisions
        .iter()
        .flatten()
        .filter_map(|d| if let Fault::Delay { ms } = d.fault { Some(ms) } else { None })
        .max();
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(d) = decisions.iter().flatten().find(|d| d.fault.is_transport()) {
        let idx: Vec<usize> = logged.iter().flatten().copied().collect();
        inner.engine.relabel(&idx, &format!("{}:{}", d.rule, d.fault.kind()));
    }
    decisions
}

/// Transport faults that never reach the upstream: the reply, at once.
fn before_upstream(fault: &Fault) -> Option<Reply> {
    let plain = |content_type, body: Vec<u8>| Reply::Plain { status: 200, headers: Vec::new(), content_type, body };
    Some(match fault {
        Fault::Http { status, headers, body } => Reply::Plain {
            status: *status,
            headers: headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            content_type: "application/json",
            body: body.clone().unwrap_or_default().into_bytes(),
        },
        Fault::Hang => Reply::Hang,
        Fault::Endless => Reply::Endless,
        Fault::Reset { after_bytes: 0 } => Reply::Reset { body: Vec::new(), after: 0 },
        Fault::Garbage => plain("application/json", (0..256).map(|_| fastrand::u8(..)).collect()),
        Fault::Html => plain(
            "text/html",
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
        ),
        Fault::Empty => plain("application/json", Vec::new()),
        _ => return None,
    })
}

/// Answer the calls whose fault needs no upstream (errors, nulls, lagging heads), rewrite the
/// ones it asks of differently (wrong heights, served heads), and note what to do with the
/// upstream's answer of the others.
async fn answer_locally(
    inner: &Inner,
    calls: &mut [Value],
    decisions: &[Option<Decision>],
) -> (Vec<Option<Value>>, Vec<Post>) {
    let needs_head = decisions.iter().flatten().any(|d| d.head != HeadView::Real);
    let real_head = if needs_head { upstream_head(inner).await } else { None };
    let mut answers: Vec<Option<Value>> = vec![None; calls.len()];
    let mut posts: Vec<Post> = vec![Post::None; calls.len()];
    for (i, (call, d)) in calls.iter_mut().zip(decisions).enumerate() {
        let Some(d) = d else { continue };
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        match &d.fault {
            Fault::RpcError { code, message, data } => {
                answers[i] = Some(error_answer(&id, *code, message, data.as_ref()));
            }
            Fault::NullResult => answers[i] = Some(answer(&id, &Value::Null)),
            Fault::MaxRange { blocks, code, message } => {
                if let Some((from, to)) = logs_range(call)
                    && to.saturating_sub(from) >= *blocks
                {
                    let hint = format!("[{from:#x}, {:#x}]", from + blocks.saturating_sub(1));
                    answers[i] = Some(error_answer(&id, *code, &message.replace("{range}", &hint), None));
                }
            }
            Fault::Result { value } => answers[i] = Some(answer(&id, value)),
            Fault::WrongHeight { offset } => {
                if let Some(n) = call_height(call) {
                    set_height(call, n.saturating_add_signed(*offset));
                }
            }
            Fault::HeadLag { .. } | Fault::FreezeHead | Fault::HeadBackwards { .. } => {
                let Some(real) = real_head else {
                    answers[i] = Some(error_answer(&id, -32603, "upstream head unknown", None));
                    continue;
                };
                let served = match d.head {
                    HeadView::Behind(k) => real.saturating_sub(k),
                    HeadView::Frozen(_) => inner.engine.freeze(&d.rule, real),
                    HeadView::Real => real,
                };
                match call_method(call) {
                    "eth_blockNumber" => answers[i] = Some(answer(&id, &Value::String(format!("{served:#x}")))),
                    "eth_getBlockByNumber" if is_head_tag(call) => set_height(call, served),
                    "eth_getBlockByNumber" => {
                        if call_height(call).is_some_and(|n| n > served) {
                            answers[i] = Some(answer(&id, &Value::Null));
                        }
                    }
                    _ => posts[i] = Post::CapHead(served),
                }
            }
            other => posts[i] = Post::of(other),
        }
    }
    (answers, posts)
}

/// Forward the calls still unanswered, in one request, and file the answers by id. Errs with
/// the reply to send when the upstream failed or said something that cannot be taken apart.
async fn forward(inner: &Inner, calls: &[Value], batch: bool, answers: &mut [Option<Value>]) -> Result<(), Reply> {
    let pending: Vec<usize> = (0..calls.len()).filter(|&i| answers[i].is_none()).collect();
    let Some(&first) = pending.first() else { return Ok(()) };
    let out =
        if batch { Value::Array(pending.iter().map(|&i| calls[i].clone()).collect()) } else { calls[first].clone() };
    let (status, body) = upstream_post(inner, out.to_string().into_bytes()).await.map_err(|e| bad_gateway(&e))?;
    match serde_json::from_slice::<Value>(&body).ok() {
        Some(Value::Array(items)) if batch => {
            for &i in &pending {
                let id = calls[i].get("id");
                answers[i] = items.iter().find(|a| a.get("id") == id).cloned();
            }
            Ok(())
        }
        Some(v @ Value::Object(_)) if !batch => {
            answers[first] = Some(v);
            Ok(())
        }
        // The upstream said something we cannot take apart: relay it as it is.
        _ => Err(Reply::Plain { status, headers: Vec::new(), content_type: "application/json", body }),
    }
}

/// How the finished body goes back: dripped, cut, reset, with junk after it, padded, or plain.
fn deliver(transport: Option<&Fault>, mut body: Vec<u8>, out: Value) -> Reply {
    let plain = |body| Reply::Plain { status: 200, headers: Vec::new(), content_type: "application/json", body };
    match transport {
        Some(Fault::SlowBody { chunk, interval_ms }) => {
            Reply::Slow { body, chunk: *chunk, interval: Duration::from_millis(*interval_ms) }
        }
        Some(Fault::Truncate { fraction }) => Reply::Truncated { body, fraction: *fraction },
        Some(Fault::Reset { after_bytes }) => Reply::Reset { body, after: *after_bytes },
        Some(Fault::TrailingGarbage) => {
            body.extend_from_slice(b"}\x00garbage");
            plain(body)
        }
        Some(Fault::Oversize { bytes }) => plain(rewrite::pad(out, *bytes).to_string().into_bytes()),
        _ => plain(body),
    }
}
