//! The offline demo, started as a child process like a new user would: within 60 s the API and
//! the database show blocks arriving with no gap, the liar's blocks rejected, the laggard
//! excluded, the throttled provider paced, and an alert that opened and resolved.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::init_tracing;
use crate::http::{self, client};

/// The demo as a child process, killed when the test ends, however it ends.
pub struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the demo on a free loopback port; returns it and its base URL.
pub fn start_demo(db: &std::path::Path) -> (Demo, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["demo", "--listen", "127.0.0.1:0", "--run-for", "120", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("api listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(20)).expect("the demo prints its API address");
    (demo, base)
}

async fn scalar(c: &http::HttpClient, base: &str, sql: &str) -> i64 {
    let r = http::sql(c, base, sql).await;
    assert_eq!(r.status, 200, "{sql}: {}", r.text());
    r.json()["rows"][0][0].as_i64().unwrap_or(0)
}

#[derive(Debug, Default)]
struct Seen {
    blocks: i64,
    contiguous: bool,
    gaps_open: bool,
    liar_rejected: i64,
    liar_penalised: i64,
    liar_logs_refused: i64,
    events_decoded: i64,
    laggard_excluded: i64,
    throttled_429: i64,
    throttled_paced: i64,
    alerts_opened: i64,
    alerts_resolved: i64,
}

impl Seen {
    fn all(&self) -> bool {
        self.blocks >= 30
            && self.contiguous
            && !self.gaps_open
            && self.liar_rejected > 0
            && self.liar_penalised > 0
            && self.events_decoded > 0
            && self.laggard_excluded > 0
            && self.throttled_429 > 0
            && self.throttled_paced > 0
            && self.alerts_opened > 0
            && self.alerts_resolved > 0
    }
}

async fn look(c: &http::HttpClient, base: &str) -> Seen {
    let gaps: Value = http::get(c, &format!("{base}/v1/gaps")).await.json();
    let blocks = scalar(c, base, "SELECT count(*) FROM canonical_blocks").await;
    let span = scalar(c, base, "SELECT coalesce(max(number) - min(number) + 1, 0) FROM canonical_blocks").await;
    let events = |p: &str, kind: &str| {
        format!("SELECT count(*) FROM provider_events_view WHERE provider = '{p}' AND kind = '{kind}'")
    };
    let outcomes = |p: &str, o: &str| {
        format!("SELECT count(*) FROM provider_requests_view WHERE provider = '{p}' AND outcome = '{o}'")
    };
    Seen {
        blocks,
        contiguous: blocks == span,
        gaps_open: gaps["missing"].as_array().is_none_or(|m| !m.is_empty())
            || gaps["broken_links"].as_array().is_none_or(|m| !m.is_empty()),
        liar_rejected: scalar(c, base, &outcomes("liar", "invalid_response")).await,
        liar_penalised: scalar(c, base, &events("liar", "integrity_penalty")).await,
        // The liar's forged logs, caught by the spot checks (receipts root mismatch) and listed
        // in the dashboard's indexer panel.
        liar_logs_refused: http::get(c, &format!("{base}/v1/index/activity?minutes=60"))
            .await
            .json()["refused"]
            .as_array()
            .map_or(0, |r| r.iter().filter(|x| x["provider"] == "liar").filter_map(|x| x["refused"].as_i64()).sum()),
        events_decoded: scalar(c, base, "SELECT count(*) FROM evt_token_transfer_view").await,
        laggard_excluded: scalar(
            c,
            base,
            "SELECT count(*) FROM provider_events_view WHERE provider = 'laggard' AND kind = 'excluded' AND reason LIKE '%lag%'",
        )
        .await,
        throttled_429: scalar(c, base, &outcomes("throttled", "rate_limited")).await,
        throttled_paced: scalar(
            c,
            base,
            "SELECT count(*) FROM provider_events_view WHERE provider = 'throttled' AND kind IN ('cooldown', 'rate_adjusted')",
        )
        .await,
        alerts_opened: scalar(c, base, "SELECT count(*) FROM alerts_view").await,
        alerts_resolved: scalar(c, base, "SELECT count(*) FROM alerts_view WHERE ended_at_ms IS NOT NULL").await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_every_behaviour_within_a_minute() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.db");
    let started = Instant::now();
    let (demo, base) = start_demo(&db);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let c = client();
    let mut seen = Seen::default();
    while started.elapsed() < Duration::from_secs(60) {
        seen = look(&c, &base).await;
        if seen.all() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(seen.all(), "after {:.1} s: {seen:?}", started.elapsed().as_secs_f64());
    // Caught forging blocks, the liar is asked for receipts only by the spot checks, and only
    // while its breaker lets a call through: its forged logs show up every 10–30 s.
    while seen.liar_logs_refused == 0 && started.elapsed() < Duration::from_secs(110) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen = look(&c, &base).await;
    }
    assert!(seen.liar_logs_refused > 0, "the liar's forged logs caught: {seen:?}");
    // The providers view tells the same story.
    let providers = http::get(&c, &format!("{base}/v1/providers")).await.json();
    let names: Vec<&str> = providers["providers"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["steady", "flaky", "laggard", "throttled", "liar"]);
    // Caught forging, the liar stays demoted: never the primary, never healthy, though its
    // weight (1.5) would make it the best on paper (the integrity memory lasts an hour).
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(90) {
        let providers = http::get(&c, &format!("{base}/v1/providers")).await.json();
        let liar = providers["providers"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == "liar"))
            .cloned()
            .unwrap_or_default();
        assert_ne!(liar["primary"], true, "the liar is the primary again: {liar}");
        assert_ne!(liar["state"], "healthy", "the liar looks healthy again: {liar}");
        assert!(liar["score_parts"]["integrity"].as_f64().is_some_and(|i| i > 0.0), "{liar}");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(samples > 10);
    drop(demo);
}
