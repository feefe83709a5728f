//! What the API refuses before any handler runs, each error in the JSON shape: DNS rebinding
//! and cross-site requests against the keyless loopback API, oversized heads and bodies, slow
//! bodies, unknown methods, one client holding every connection; and blocks that are final
//! (`confirmations` deep) on request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use blockstreamer::api::ApiOptions;
use blockstreamer::app::{App, AppOptions};
use blockstreamer::export::{self, ExportOptions, Format, Table};
use blockstreamer::sim::{self, SimProviderOptions};
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::api::{fixture_db, serve_db};
use crate::bed::sim_chain;
use crate::helpers::{TempDb, temp_db};
use crate::http::{Resp, client, get, send};

/// One raw HTTP/1.1 exchange (`Connection: close` is added): status line code, and the body.
fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut req = head.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    let _ = s.write_all(&req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The error code of a JSON error body (panics if it is not one).
fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["error"]["message"].as_str().filter(|m| !m.is_empty()).unwrap_or_else(|| panic!("no message: {body}"));
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("no code: {body}")).to_string()
}

fn sql_post(host: &str, origin: Option<&str>, content_type: &str) -> String {
    let body = r#"{"sql": "SELECT count(*) FROM canonical_blocks"}"#;
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    format!(
        "POST /v1/sql HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_and_cross_site_requests_are_refused() {
    let db = fixture_db().await;
    let opts = ApiOptions { cors_origins: vec!["http://app.example:3000".into()], ..ApiOptions::default() };
    let (server, store, base) = serve_db(&db, opts).await;
    let addr = base.trim_start_matches("http://").to_string();
    let (s, b) = tokio::task::spawn_blocking({
        let a = addr.clone();
        move || raw(&a, &sql_post(&a, None, "application/json"), b"")
    })
    .await
    .expect("join");
    assert_eq!(s, 200, "the legitimate request: {b}");
    let attacks = [
        // DNS rebinding: the page's origin and Host are the attacker's name for 127.0.0.1.
        ("evil.example:8080".to_string(), Some("http://evil.example:8080"), "text/plain", 403),
        ("evil.example".to_string(), None, "application/json", 403),
        // A cross-site request to the real address.
        (addr.clone(), Some("http://evil.example"), "application/json", 403),
        (addr.clone(), Some("null"), "application/json", 403),
        // A simple (form or text/plain) POST, same origin or none.
        (addr.clone(), None, "text/plain", 415),
        (addr.clone(), None, "application/x-www-form-urlencoded", 415),
    ];
    for (host, origin, ct, want) in attacks {
        let a = addr.clone();
        let (s, b) =
            tokio::task::spawn_blocking(move || raw(&a, &sql_post(&host, origin, ct), b"")).await.expect("join");
        assert_eq!(s, want, "{origin:?} {ct}: {b}");
        code(&b);
        assert!(!b.contains("\"rows\""), "no rows leak: {b}");
    }
    // An allowed origin is served and told so; its preflight is answered.
    let c = client();
    let req = http::Request::post(format!("{base}/v1/sql"))
        .header("origin", "http://app.example:3000")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(r#"{"sql": "SELECT 1"}"#)))
        .expect("req");
    let r: Resp = send(&c, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("http://app.example:3000")
    );
    let pre = http::Request::options(format!("{base}/v1/sql"))
        .header("origin", "http://app.example:3000")
        .header("access-control-request-method", "POST")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let r = send(&c, pre).await;
    assert_eq!(r.status, 204);
    assert!(r.headers.get("access-control-allow-methods").is_some());
    // localhost names are this server.
    let a = addr.clone();
    let port = a.rsplit(':').next().unwrap_or_default().to_string();
    let (s, _) = tokio::task::spawn_blocking(move || {
        raw(&a, &format!("GET /healthz HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"), b"")
    })
    .await
    .expect("join");
    assert_eq!(s, 200);
    server.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json() {
    let db = fixture_db().await;
    let opts = ApiOptions { request_timeout: Duration::from_millis(800), ..ApiOptions::default() };
    let (server, store, base) = serve_db(&db, opts).await;
    let addr = base.trim_start_matches("http://").to_string();
    let h = format!("Host: {addr}\r\n");
    let big_body = vec![b' '; 70 << 10];
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        ("405", format!("DELETE /v1/blocks HTTP/1.1\r\n{h}\r\n"), vec![], 405, "method_not_allowed"),
        (
            "413 declared",
            format!(
                "POST /v1/sql HTTP/1.1\r\n{h}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                big_body.len()
            ),
            big_body.clone(),
            413,
            "too_large",
        ),
        (
            "413 chunked",
            format!("POST /v1/sql HTTP/1.1\r\n{h}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"),
            [format!("{:x}\r\n", big_body.len()).into_bytes(), big_body.clone(), b"\r\n0\r\n\r\n".to_vec()].concat(),
            413,
            "too_large",
        ),
        ("414", format!("GET /v1/blocks?from={} HTTP/1.1\r\n{h}\r\n", "1".repeat(10_000)), vec![], 414, "uri_too_long"),
        (
            "431",
            format!(
                "GET /healthz HTTP/1.1\r\n{h}{}\r\n",
                (0..40).map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(1000))).collect::<String>()
            ),
            vec![],
            431,
            "headers_too_large",
        ),
        ("404", format!("GET /v1/nope HTTP/1.1\r\n{h}\r\n"), vec![], 404, "not_found"),
    ];
    for (name, head, body, want, want_code) in cases {
        let a = addr.clone();
        let (s, b) = tokio::task::spawn_blocking(move || raw(&a, &head, &body)).await.expect("join");
        assert_eq!(s, want, "{name}: {b}");
        assert_eq!(code(&b), want_code, "{name}");
    }
    // A body that drips in slower than the deadline: the client's delay, 408.
    let a = addr.clone();
    let (s, b) = tokio::task::spawn_blocking(move || {
        let mut st = TcpStream::connect(&a).expect("connect");
        st.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let head = format!("POST /v1/sql HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{{");
        st.write_all(head.as_bytes()).expect("write");
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            let _ = st.write_all(b" ");
        }
        let mut out = Vec::new();
        let _ = st.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0u16);
        (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    })
    .await
    .expect("join");
    assert_eq!(s, 408, "{b}");
    assert_eq!(code(&b), "request_timeout");
    // Bad values the routes used to mishandle.
    let c = client();
    let r = get(&c, &format!("{base}/v1/blocks/latest/transactions")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["transactions"].is_array());
    for bad in ["since=-5h", "since=-1"] {
        let r = get(&c, &format!("{base}/v1/export/provider_requests?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains("negative"), "{}", r.text());
    }
    let r = crate::http::post(&c, &format!("{base}/v1/sql"), r#"{"sql": "-- nothing"}"#, &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("no statement"), "{}", r.text());
    let r = crate::http::post(
        &c,
        &format!("{base}/v1/sql"),
        r#"{"sql": "SELECT ?1", "params": [9223372036854775808]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("string"), "{}", r.text());
    server.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_hold_every_connection() {
    let db = fixture_db().await;
    let opts = ApiOptions { max_connections: 1024, max_connections_per_ip: 40, ..ApiOptions::default() };
    let (server, store, base) = serve_db(&db, opts).await;
    let addr = base.trim_start_matches("http://").to_string();
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        // 40 idle connections are held; the next ones are refused at once, with a reason.
        let held: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(&a).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..5 {
            let (s, b) = raw(&a, &format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n"), b"");
            assert_eq!(s, 429, "{b}");
            assert_eq!(code(&b), "too_many_connections");
        }
        // Closing some frees this peer's slots at once.
        drop(held);
        std::thread::sleep(Duration::from_millis(200));
        let (s, b) = raw(&a, &format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n"), b"");
        assert_eq!(s, 200, "{b}");
    })
    .await
    .expect("join");
    server.stop().await;
    store.close().await;
}

/// A database written with `confirmations = 10` from a simulated chain of 31 blocks.
async fn confirmed_db() -> TempDb {
    let chain = sim_chain(30, 3);
    let sp = sim::serve(chain, SimProviderOptions { name: "a".into(), lag: 0 }).await.expect("serve");
    let db = temp_db();
    let mut config = config_for(&[sp.url()], &["a"]);
    config.confirmations = 10;
    config.api.enabled = false;
    config.alerts.enabled = false;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    app.backfill(0, 30, &CancellationToken::new()).await.expect("backfill");
    match Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => panic!("app still shared"),
    }
    sp.stop();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_blocks_are_those_confirmations_deep() {
    let db = confirmed_db().await;
    let (server, store, base) = serve_db(&db, ApiOptions::default()).await;
    let c = client();
    let latest = get(&c, &format!("{base}/v1/blocks/latest")).await.json();
    assert_eq!((latest["number"].as_u64(), latest["final"].as_bool()), (Some(30), Some(false)));
    let fin = get(&c, &format!("{base}/v1/blocks/latest?final=true")).await.json();
    assert_eq!((fin["number"].as_u64(), fin["final"].as_bool()), (Some(20), Some(true)));
    assert_eq!(get(&c, &format!("{base}/v1/blocks/20")).await.json()["final"], true);
    let r = get(&c, &format!("{base}/v1/blocks/21?final=true")).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not final"), "{}", r.text());
    assert_eq!(get(&c, &format!("{base}/v1/blocks/21/transactions?final=true")).await.status, 404);
    let page = get(&c, &format!("{base}/v1/blocks?from=15&final=true")).await.json();
    let numbers: Vec<u64> =
        page["blocks"].as_array().expect("blocks").iter().filter_map(|b| b["number"].as_u64()).collect();
    assert_eq!(numbers, (15..=20).collect::<Vec<_>>());
    assert_eq!(get(&c, &format!("{base}/v1/blocks?final=maybe")).await.status, 400);
    let csv = get(&c, &format!("{base}/v1/export/blocks?final=true&format=csv")).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.text().lines().count(), 1 + 21, "header and heights 0..=20");
    server.stop().await;
    store.close().await;
    // The same notion for files.
    let out = tempfile::tempdir().expect("out");
    let opts = ExportOptions {
        db: db.path.clone(),
        access: blockstreamer::store::Access::ReadOnly,
        table: Table::Blocks,
        format: Format::Csv,
        out: out.path().to_path_buf(),
        from: None,
        to: None,
        since_ms: None,
        until_ms: None,
        chunk_size: 1000,
        chunk_minutes: 60,
        overwrite: false,
        include_orphaned: false,
        final_only: true,
        progress: false,
    };
    let summary = export::export(&opts, &CancellationToken::new()).expect("export");
    assert_eq!(summary.rows, 21);
}
