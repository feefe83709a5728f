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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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

/// Largest request we read and largest upstream answer we relay.
const MAX_REQUEST: usize = 16 << 20;
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

/// One parsed HTTP request.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    close: bool,
    body: Vec<u8>,
}

/// Read one request; `None` when the peer closed or sent something we cannot serve.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut len = 0usize;
                let mut close = req.version == Some(0);
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        // JSON-RPC clients send a length; chunked requests are not worth the code.
                        return None;
                    }
                }
                if len > MAX_REQUEST {
                    return None;
                }
                let method = req.method.unwrap_or("GET").to_string();
                let path = req.path.unwrap_or("/").to_string();
                while buf.len() < head_len + len {
                    if read_more(stream, buf).await == 0 {
                        return None;
                    }
                }
                let body = buf[head_len..head_len + len].to_vec();
                buf.drain(..head_len + len);
                return Some(Request { method, path, close, body });
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > 64 << 10 || read_more(stream, buf).await == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 << 10];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
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

/// What goes back on the wire.
#[derive(Debug)]
enum Reply {
    Plain { status: u16, headers: Vec<(String, String)>, content_type: &'static str, body: Vec<u8> },
    Slow { body: Vec<u8>, chunk: usize, interval: Duration },
    Truncated { body: Vec<u8>, fraction: f64 },
    Reset { body: Vec<u8>, after: usize },
    Hang,
    Endless,
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

fn call_method(call: &Value) -> &str {
    call.get("method").and_then(Value::as_str).unwrap_or("")
}

fn parse_quantity(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// The height a call names (`eth_getBlockByNumber` with a number).
fn call_height(call: &Value) -> Option<u64> {
    if call_method(call) != "eth_getBlockByNumber" {
        return None;
    }
    call.get("params")?.get(0)?.as_str().and_then(parse_quantity)
}

fn is_head_tag(call: &Value) -> bool {
    matches!(
        call.get("params").and_then(|p| p.get(0)).and_then(Value::as_str),
        Some("latest" | "pending" | "safe" | "finalized")
    )
}

fn answer(id: &Value, result: &Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error_answer(id: &Value, code: i32, message: &str, data: Option<&Value>) -> Value {
    let mut err = json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d.clone();
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": err })
}

fn set_height(call: &mut Value, n: u64) {
    if let Some(p) = call.get_mut("params").and_then(|p| p.get_mut(0)) {
        *p = Value::String(format!("{n:#x}"));
    }
}

fn random_hash() -> String {
    let mut s = String::from("0x");
    for _ in 0..32 {
        s.push_str(&format!("{:02x}", fastrand::u8(..)));
    }
    s
}

/// What to do with one call's upstream answer afterwards.
#[derive(Debug, Clone)]
enum Post {
    None,
    Forge,
    Mutate(String, Value),
    Remove(String),
    WrongId,
    IdAsString,
    Envelope(String, Option<Value>),
    /// Null the block if it is above this served head.
    CapHead(u64),
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
    v.get("result")?.as_str().and_then(parse_quantity)
}

fn bad_gateway(e: &str) -> Reply {
    json_reply(502, &json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32603, "message": e } }))
}

/// Apply the script to one JSON-RPC request body.
async fn process(inner: &Inner, body: &[u8]) -> Reply {
    let (mut calls, batch) = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) if !a.is_empty() => (a, true),
        Ok(v @ Value::Object(_)) => (vec![v], false),
        // Not JSON-RPC we understand: relay it untouched.
        _ => {
            return match upstream_post(inner, body.to_vec()).await {
                Ok((status, body)) => {
                    Reply::Plain { status, headers: Vec::new(), content_type: "application/json", body }
                }
                Err(e) => bad_gateway(&e),
            };
        }
    };
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
    let transport = decisions.iter().flatten().find(|d| d.fault.is_transport()).map(|d| d.fault.clone());
    if let Some(d) = decisions.iter().flatten().find(|d| d.fault.is_transport()) {
        let idx: Vec<usize> = logged.iter().flatten().copied().collect();
        inner.engine.relabel(&idx, &format!("{}:{}", d.rule, d.fault.kind()));
    }
    // Faults that never reach the upstream.
    match &transport {
        Some(Fault::Http { status, headers, body }) => {
            return Reply::Plain {
                status: *status,
                headers: headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                content_type: "application/json",
                body: body.clone().unwrap_or_default().into_bytes(),
            };
        }
        Some(Fault::Hang) => return Reply::Hang,
        Some(Fault::Endless) => return Reply::Endless,
        Some(Fault::Reset { after_bytes: 0 }) => return Reply::Reset { body: Vec::new(), after: 0 },
        Some(Fault::Garbage) => {
            let body: Vec<u8> = (0..256).map(|_| fastrand::u8(..)).collect();
            return Reply::Plain { status: 200, headers: Vec::new(), content_type: "application/json", body };
        }
        Some(Fault::Html) => {
            let body = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>";
            return Reply::Plain { status: 200, headers: Vec::new(), content_type: "text/html", body: body.to_vec() };
        }
        Some(Fault::Empty) => {
            return Reply::Plain {
                status: 200,
                headers: Vec::new(),
                content_type: "application/json",
                body: Vec::new(),
            };
        }
        _ => {}
    }

    let needs_head = decisions.iter().flatten().any(|d| d.head != HeadView::Real);
    let real_head = if needs_head { upstream_head(inner).await } else { None };

    let mut answers: Vec<Option<Value>> = vec![None; calls.len()];
    let mut posts: Vec<Post> = vec![Post::None; calls.len()];
    for (i, (call, d)) in calls.iter_mut().zip(&decisions).enumerate() {
        let Some(d) = d else { continue };
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        match &d.fault {
            Fault::RpcError { code, message, data } => {
                answers[i] = Some(error_answer(&id, *code, message, data.as_ref()))
            }
            Fault::NullResult => answers[i] = Some(answer(&id, &Value::Null)),
            Fault::Result { value } => answers[i] = Some(answer(&id, value)),
            Fault::Remove { field } => posts[i] = Post::Remove(field.clone()),
            Fault::ForgedHash => posts[i] = Post::Forge,
            Fault::Mutate { field, value } => posts[i] = Post::Mutate(field.clone(), value.clone()),
            Fault::WrongId => posts[i] = Post::WrongId,
            Fault::IdAsString => posts[i] = Post::IdAsString,
            Fault::Envelope { field, value } => posts[i] = Post::Envelope(field.clone(), value.clone()),
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
            _ => {}
        }
    }

    // Forward whatever still needs the upstream, in one request.
    let pending: Vec<usize> = (0..calls.len()).filter(|&i| answers[i].is_none()).collect();
    if !pending.is_empty() {
        let out = if batch {
            Value::Array(pending.iter().map(|&i| calls[i].clone()).collect())
        } else {
            calls[pending[0]].clone()
        };
        let (status, body) = match upstream_post(inner, out.to_string().into_bytes()).await {
            Ok(r) => r,
            Err(e) => return bad_gateway(&e),
        };
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        match parsed {
            Some(Value::Array(items)) if batch => {
                for &i in &pending {
                    let id = calls[i].get("id");
                    answers[i] = items.iter().find(|a| a.get("id") == id).cloned();
                }
            }
            Some(v @ Value::Object(_)) if !batch => answers[pending[0]] = Some(v),
            // The upstream said something we cannot take apart: relay it as it is.
            _ => return Reply::Plain { status, headers: Vec::new(), content_type: "application/json", body },
        }
    }
    for (a, post) in answers.iter_mut().zip(&posts) {
        let Some(a) = a else { continue };
        match post {
            Post::None => {}
            Post::Forge => {
                if let Some(r) = a.get_mut("result").filter(|r| r.is_object()) {
                    r["hash"] = Value::String(random_hash());
                }
            }
            Post::Mutate(field, value) => {
                if let Some(r) = a.get_mut("result").filter(|r| r.is_object()) {
                    if field.starts_with('/') {
                        if let Some(slot) = r.pointer_mut(field) {
                            *slot = value.clone();
                        }
                    } else {
                        r[field.as_str()] = value.clone();
                    }
                }
            }
            Post::Remove(field) => {
                if let Some(r) = a.get_mut("result") {
                    let (parent, key) = match field.rsplit_once('/') {
                        Some((p, k)) if field.starts_with('/') => (r.pointer_mut(p), k.to_string()),
                        _ => (Some(r), field.clone()),
                    };
                    match parent {
                        Some(Value::Object(obj)) => {
                            obj.remove(&key);
                        }
                        Some(Value::Array(arr)) => {
                            if let Ok(i) = key.parse::<usize>()
                                && i < arr.len()
                            {
                                arr.remove(i);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Post::WrongId => {
                let wrong = match a.get("id") {
                    Some(Value::Number(n)) => json!(n.as_u64().unwrap_or(0).wrapping_add(1_000_003)),
                    _ => json!("wrong-id"),
                };
                a["id"] = wrong;
            }
            Post::IdAsString => {
                let id = a.get("id").map(Value::to_string).unwrap_or_default();
                a["id"] = Value::String(id);
            }
            Post::Envelope(field, value) => {
                if let Some(obj) = a.as_object_mut() {
                    match value {
                        Some(v) => {
                            obj.insert(field.clone(), v.clone());
                        }
                        None => {
                            obj.remove(field);
                        }
                    }
                }
            }
            Post::CapHead(served) => {
                let above = a
                    .get("result")
                    .and_then(|r| r.get("number"))
                    .and_then(Value::as_str)
                    .and_then(parse_quantity)
                    .is_some_and(|n| n > *served);
                if above {
                    a["result"] = Value::Null;
                }
            }
        }
    }
    let duplicate = decisions.iter().flatten().any(|d| d.fault == Fault::Duplicate);
    let out = if batch {
        let items: Vec<Value> = answers.into_iter().flatten().collect();
        if duplicate {
            Value::Array(items.iter().flat_map(|a| [a.clone(), a.clone()]).collect())
        } else {
            Value::Array(items)
        }
    } else {
        answers.into_iter().next().flatten().unwrap_or(Value::Null)
    };
    let mut body = out.to_string().into_bytes();
    for d in decisions.iter().flatten() {
        match &d.fault {
            Fault::Bom => body.splice(0..0, [0xEF, 0xBB, 0xBF]).for_each(drop),
            Fault::DuplicateKey { field, value } => {
                let extra = format!("{}:{},", Value::String(field.clone()), value);
                insert_after(&mut body, b"\"result\":{", extra.as_bytes());
            }
            Fault::DeepNesting { depth } => {
                let extra = format!("\"deep\":{}{},", "[".repeat(*depth), "]".repeat(*depth));
                insert_after(&mut body, b"\"result\":{", extra.as_bytes());
            }
            Fault::InvalidUtf8 => {
                // Inside the first string value: `"0x…` becomes `"\xff0x…`.
                if let Some(pos) = body.windows(3).position(|w| w == b"\"0x") {
                    body.insert(pos + 1, 0xFF);
                }
            }
            _ => {}
        }
    }
    match transport {
        Some(Fault::SlowBody { chunk, interval_ms }) => {
            Reply::Slow { body, chunk, interval: Duration::from_millis(interval_ms) }
        }
        Some(Fault::Truncate { fraction }) => Reply::Truncated { body, fraction },
        Some(Fault::Reset { after_bytes }) => Reply::Reset { body, after: after_bytes },
        Some(Fault::TrailingGarbage) => {
            body.extend_from_slice(b"}\x00garbage");
            Reply::Plain { status: 200, headers: Vec::new(), content_type: "application/json", body }
        }
        Some(Fault::Oversize { bytes }) => {
            let mut padded = out;
            if let Some(obj) = padded.as_object_mut() {
                obj.insert("padding".into(), Value::String("x".repeat(bytes)));
            } else if let Some(Value::Object(first)) = padded.as_array_mut().and_then(|a| a.first_mut()) {
                first.insert("padding".into(), Value::String("x".repeat(bytes)));
            }
            Reply::Plain {
                status: 200,
                headers: Vec::new(),
                content_type: "application/json",
                body: padded.to_string().into_bytes(),
            }
        }
        _ => Reply::Plain { status: 200, headers: Vec::new(), content_type: "application/json", body },
    }
}

/// Insert `extra` right after the first occurrence of `marker` in `body` (if any).
fn insert_after(body: &mut Vec<u8>, marker: &[u8], extra: &[u8]) {
    if let Some(pos) = body.windows(marker.len()).position(|w| w == marker) {
        let at = pos + marker.len();
        body.splice(at..at, extra.iter().copied()).for_each(drop);
    }
}

/// `fraction` (validated to 0..1) of `len`, rounded down.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
fn share(len: usize, fraction: f64) -> usize {
    ((len as f64) * fraction.clamp(0.0, 1.0)).floor() as usize
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown")
}

fn head_bytes(status: u16, content_type: &str, len: Option<usize>, extra: &[(String, String)], keep: bool) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n", reason(status));
    match len {
        Some(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        None => h.push_str("Transfer-Encoding: chunked\r\n"),
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Write the reply; returns whether the connection may serve another request.
async fn write_reply(stream: &mut TcpStream, reply: Reply, keep: bool) -> bool {
    match reply {
        Reply::Plain { status, headers, content_type, body } => {
            let mut out = head_bytes(status, content_type, Some(body.len()), &headers, keep);
            out.extend_from_slice(&body);
            stream.write_all(&out).await.is_ok() && keep
        }
        Reply::Slow { body, chunk, interval } => {
            if stream.write_all(&head_bytes(200, "application/json", Some(body.len()), &[], keep)).await.is_err() {
                return false;
            }
            for part in body.chunks(chunk) {
                tokio::time::sleep(interval).await;
                if stream.write_all(part).await.is_err() {
                    return false;
                }
            }
            keep
        }
        Reply::Truncated { body, fraction } => {
            let cut = share(body.len(), fraction);
            let mut out = head_bytes(200, "application/json", Some(body.len()), &[], false);
            out.extend_from_slice(&body[..cut.min(body.len())]);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            false
        }
        Reply::Reset { body, after } => {
            if after > 0 {
                let mut out = head_bytes(200, "application/json", Some(body.len()), &[], false);
                out.extend_from_slice(&body);
                out.truncate(after);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
            }
            // Zero linger turns the close into an RST.
            let _ = stream.set_zero_linger();
            false
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            false
        }
        Reply::Endless => {
            if stream.write_all(&head_bytes(200, "application/json", None, &[], false)).await.is_err() {
                return false;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "x".repeat(64 << 10));
            let prefix = r#"{"jsonrpc":"2.0","id":1,"result":""#;
            let first = format!("{:x}\r\n{prefix}\r\n", prefix.len());
            if stream.write_all(first.as_bytes()).await.is_err() {
                return false;
            }
            while stream.write_all(chunk.as_bytes()).await.is_ok() {
                tokio::task::yield_now().await;
            }
            false
        }
    }
}
