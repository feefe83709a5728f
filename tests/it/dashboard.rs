//! The built-in dashboard: its routes and the JSON it reads, then the page itself in real
//! headless Chromium against the demo — no console errors, a row per provider with its state, a
//! latency plot with points, a stored head that moves while the page is open, a screenshot.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::demo::start_demo;
use crate::helpers::init_tracing;
use crate::http::{self, client};

fn chromium() -> PathBuf {
    crate::helpers::find_tool("CHROMIUM", &["chromium", "chromium-browser"], ".ci/run installs Debian's chromium")
}

/// Headless Chromium with a DevTools WebSocket to its one page.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    sender: soketto::connection::Sender<tokio_util::compat::Compat<tokio::net::TcpStream>>,
    events: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    replies: tokio::sync::mpsc::UnboundedReceiver<Value>,
    next_id: u64,
}

impl Browser {
    async fn launch() -> Self {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1400,1300"])
            .args(["--hide-scrollbars", "about:blank"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let ws = rx.recv_timeout(Duration::from_secs(20)).expect("chromium prints its DevTools address");
        let rest = ws.strip_prefix("ws://").expect("ws url");
        let (hostport, _) = rest.split_once('/').expect("path");
        // The page target (about:blank) and its own socket.
        let c = client();
        let targets = http::get(&c, &format!("http://{hostport}/json/list")).await.json();
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|x| x["type"] == "page"))
            .and_then(|x| x["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let path = page.strip_prefix(&format!("ws://{hostport}")).expect("page path").to_string();
        let tcp = tokio::net::TcpStream::connect(hostport).await.expect("connect devtools");
        let mut hs = soketto::handshake::Client::new(tcp.compat(), hostport, &path);
        match hs.handshake().await.expect("handshake") {
            soketto::handshake::ServerResponse::Accepted { .. } => {}
            other => panic!("devtools refused the socket: {other:?}"),
        }
        let (sender, mut receiver) = hs.into_builder().finish();
        let events: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = std::sync::Arc::default();
        let (reply_tx, replies) = tokio::sync::mpsc::unbounded_channel();
        let ev = events.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if receiver.receive_data(&mut buf).await.is_err() {
                    return;
                }
                let Ok(v) = serde_json::from_slice::<Value>(&buf) else { continue };
                if v.get("id").is_some() {
                    let _ = reply_tx.send(v);
                } else if let Ok(mut e) = ev.lock() {
                    e.push(v);
                }
            }
        });
        Self { child, _profile: profile, sender, events, replies, next_id: 1 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.sender.send_text(msg).await.expect("send");
        self.sender.flush().await.expect("flush");
        loop {
            let r = tokio::time::timeout(Duration::from_secs(20), self.replies.recv())
                .await
                .expect("devtools answers")
                .expect("socket open");
            if r["id"] == id {
                assert!(r.get("error").is_none(), "{method}: {r}");
                return r["result"].clone();
            }
        }
    }

    /// What the page shows, read from its DOM.
    async fn state(&mut self) -> Value {
        let expr = r#"JSON.stringify({
            rows: [...document.querySelectorAll('#providers tbody tr')].map(r => ({
                name: r.dataset.provider, state: r.dataset.state,
                badge: (r.querySelector('.badge') || {}).textContent })),
            latencyPoints: Number(document.getElementById('latency').dataset.points),
            headPoints: Number(document.getElementById('heads').dataset.points),
            activityPoints: Number(document.getElementById('activity').dataset.points),
            activityLegend: [...document.querySelectorAll('#activity-legend span')].map(s => s.textContent),
            decodeErrors: document.getElementById('decode-errors').textContent,
            clients: [...document.querySelectorAll('#clients tbody tr')].filter(r => r.dataset.method).map(r => ({
                method: r.dataset.method, cells: [...r.querySelectorAll('td')].map(td => td.textContent) })),
            storedHead: Number(document.body.dataset.storedHead),
            shownHead: Number(document.getElementById('stored-head').textContent),
            updates: Number(document.body.dataset.updates) })"#;
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true })).await;
        let text = r["result"]["value"].as_str().unwrap_or_else(|| panic!("evaluate: {r}")).to_string();
        serde_json::from_str(&text).expect("state JSON")
    }

    /// Console messages, browser log entries (CSP violations, failed loads) and exceptions.
    fn problems(&self) -> Vec<Value> {
        let events = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        events
            .into_iter()
            .filter(|e| {
                matches!(e["method"].as_str(), Some("Runtime.consoleAPICalled" | "Runtime.exceptionThrown"))
                    || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] != "verbose")
            })
            .collect()
    }

    async fn close(mut self) {
        let _ = self.sender.close().await;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_in_headless_chromium() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (demo, base) = start_demo(&dir.path().join("demo.db"));
    let c = client();

    // The page and its assets, same-origin only.
    let page = http::get(&c, &format!("{base}/")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().is_ok_and(|s| s.contains("default-src 'self'")))
    );
    assert!(
        page.text().contains("/dashboard.js") && !page.text().contains("http://") && !page.text().contains("https://")
    );
    for (path, ty) in [("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")] {
        let r = http::get(&c, &format!("{base}{path}")).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(ty)),
            "{path}"
        );
    }
    // The JSON it reads: wait for the demo's telemetry to reach the latency series.
    let started = Instant::now();
    loop {
        let lat = http::get(&c, &format!("{base}/v1/latency?seconds=120&step=10")).await.json();
        let points = lat["providers"]
            .as_object()
            .map(|m| {
                m.values()
                    .flat_map(|p| p["p95_ms"].as_array().cloned().unwrap_or_default())
                    .filter(|v| v.is_number())
                    .count()
            })
            .unwrap_or(0);
        if points >= 5 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no latency points: {lat}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = http::get(&c, &format!("{base}/v1/events?limit=5")).await.json();
    assert!(events["events"].as_array().is_some_and(|e| !e.is_empty()), "{events}");
    // Telemetry comes before the first commit: on a loaded machine the demo may not have stored
    // a block with a transfer yet when the latency points are in.
    let started = Instant::now();
    loop {
        let activity = http::get(&c, &format!("{base}/v1/index/activity?blocks=20")).await.json();
        let blocks = activity["blocks"].as_array().cloned().unwrap_or_default();
        assert!(blocks.len() <= 20, "{activity}");
        let transfers: u64 = blocks.iter().filter_map(|b| b["events"]["evt_token_transfer"].as_u64()).sum();
        if transfers > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the demo token's transfers are decoded: {activity}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for bad in [
        "/v1/latency?seconds=5",
        "/v1/latency?seconds=600&step=1",
        "/v1/events?limit=x",
        "/v1/latency?foo=1",
        "/v1/index/activity?blocks=0",
        "/v1/index/activity?minutes=99999",
    ] {
        assert_eq!(http::get(&c, &format!("{base}{bad}")).await.status, 400, "{bad}");
    }

    // A few JSON-RPC calls, for the client panel.
    for m in ["eth_blockNumber", "eth_blockNumber", "eth_chainId"] {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": m}).to_string();
        assert_eq!(http::post(&c, &format!("{base}/rpc"), body, &[]).await.status, 200);
    }

    // The page in a real browser, driven over the DevTools protocol: load it, collect every
    // console message, log entry and exception, and read its state twice.
    let mut browser = Browser::launch().await;
    browser.call("Runtime.enable", json!({})).await;
    browser.call("Log.enable", json!({})).await;
    browser.call("Page.enable", json!({})).await;
    browser.call("Page.navigate", json!({ "url": format!("{base}/") })).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = browser.state().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = browser.state().await;
    let problems = browser.problems();
    assert!(problems.is_empty(), "console errors, log entries or exceptions: {problems:#?}");
    let names: Vec<&str> =
        later["rows"].as_array().map(|r| r.iter().filter_map(|x| x["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, ["steady", "flaky", "laggard", "throttled", "liar"], "one row per provider: {later}");
    for row in later["rows"].as_array().into_iter().flatten() {
        let state = row["state"].as_str().unwrap_or_default();
        assert!(["healthy", "degraded", "down", "excluded"].contains(&state), "{row}");
        assert!(row["badge"].as_str().is_some_and(|b| b == state), "the state is shown: {row}");
    }
    assert!(later["latencyPoints"].as_u64().is_some_and(|n| n >= 5), "latency plot points: {later}");
    assert!(later["headPoints"].as_u64().is_some_and(|n| n >= 5), "head plot points: {later}");
    // The indexer panel: logs and the demo token's decoded events per block.
    assert!(later["activityPoints"].as_u64().is_some_and(|n| n >= 10), "activity plot points: {later}");
    let legend: Vec<&str> =
        later["activityLegend"].as_array().map(|l| l.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert!(legend.contains(&"logs") && legend.contains(&"evt_token_transfer"), "activity legend: {later}");
    assert_eq!(later["decodeErrors"], "0", "{later}");
    // The client panel: the calls above, per method, answered by the store.
    let clients = later["clients"].as_array().cloned().unwrap_or_default();
    let bn = clients.iter().find(|r| r["method"] == "eth_blockNumber").unwrap_or_else(|| panic!("{later}"));
    assert_eq!(bn["cells"][0], "(no key)", "{bn}");
    assert!(bn["cells"][2].as_str().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 2), "{bn}");
    assert_eq!(bn["cells"][3], "100.0 %", "from the store: {bn}");
    let (h1, h2) = (first["storedHead"].as_u64().unwrap_or(0), later["storedHead"].as_u64().unwrap_or(0));
    assert!(h1 > 0 && h2 > h1, "the page follows new blocks: {h1} then {h2}");
    assert_eq!(later["shownHead"].as_u64(), Some(h2), "the header shows the stored head: {later}");
    assert!(later["updates"].as_u64() > first["updates"].as_u64(), "it keeps polling: {first} then {later}");
    // A screenshot of what was just checked, under target/ (docs/dashboard.png is one of these).
    let shot = browser.call("Page.captureScreenshot", json!({ "format": "png" })).await;
    let png =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, shot["data"].as_str().unwrap_or_default())
            .expect("base64 PNG");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot ({} bytes)", png.len());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &png).expect("write screenshot");
    browser.close().await;

    drop(demo);
}
