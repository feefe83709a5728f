//! A small HTTP client for the API tests (hyper over loopback), an SSE reader, and a
//! Prometheus text-format checker.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http()
}

/// A finished response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// An error response must be `{"error": {"code", "message"}}`; returns the code.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error.code in {v}"));
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no error.message in {v}");
        code.to_string()
    }
}

pub async fn send(c: &HttpClient, req: http::Request<Full<Bytes>>) -> Resp {
    let resp = tokio::time::timeout(Duration::from_secs(30), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp { status: parts.status.as_u16(), headers: parts.headers, body }
}

pub async fn get(c: &HttpClient, url: &str) -> Resp {
    send(c, http::Request::get(url).body(Full::new(Bytes::new())).expect("req")).await
}

pub async fn post(c: &HttpClient, url: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(c, b.body(Full::new(body.into())).expect("req")).await
}

/// POST /v1/sql with `sql` and no parameters.
pub async fn sql(c: &HttpClient, base: &str, sql: &str) -> Resp {
    post(c, &format!("{base}/v1/sql"), serde_json::json!({ "sql": sql }).to_string(), &[]).await
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// An open event stream.
pub struct Sse {
    body: Incoming,
    buf: String,
    pub status: u16,
}

impl Sse {
    pub async fn open(c: &HttpClient, url: &str, last_event_id: Option<&str>) -> Self {
        let mut b = http::Request::get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            b = b.header("last-event-id", id);
        }
        let resp = c.request(b.body(Full::new(Bytes::new())).expect("req")).await.expect("stream request");
        let status = resp.status().as_u16();
        Self { body: resp.into_body(), buf: String::new(), status }
    }

    /// The next event (comments and keep-alives skipped), or None when the stream ended or
    /// nothing came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut ev = SseEvent { event: "message".into(), id: None, data: String::new() };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            let frame = tokio::time::timeout_at(end, self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

/// Check Prometheus text exposition: every sample line is `name{labels} value`, names legal,
/// values numbers, every `# TYPE` known. Returns the sample names seen.
pub fn parse_prometheus(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let legal = |n: &str| {
        !n.is_empty()
            && n.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (n, t) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            assert!(legal(n), "bad metric name in {line:?}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&t), "bad type in {line:?}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(legal(name), "bad metric name in {line:?}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels in {line:?}");
        }
        let ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
        assert!(ok, "bad value in {line:?}");
        names.push(name.to_string());
    }
    names
}
