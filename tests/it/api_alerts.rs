//! The alert evaluator opens and resolves each default alert under faults injected through the
//! fault proxy, records them in `alerts`, serves them at /v1/alerts and POSTs them to a
//! webhook (which fails once, so the retry is exercised).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blockstreamer::api::alerts::Evaluator;
use blockstreamer::fault::Script;
use serde_json::Value;

use crate::bed::{Bed, Truth, sim_chain};
use crate::helpers::init_tracing;
use crate::http::{client, get};

/// A webhook receiver on loopback: answers 500 to the first POST, 200 after; keeps bodies.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g, f) = (got.clone(), failed_once.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (g, f) = (g.clone(), f.clone());
            async move {
                if !f.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    g.lock().expect("hook").push(v);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

fn rule(json: &str) -> Script {
    Script::from_json(json).unwrap_or_else(|e| panic!("script {json}: {e}"))
}

/// Open alerts as (kind, subject).
async fn open_alerts(c: &crate::http::HttpClient, base: &str) -> BTreeSet<(String, String)> {
    let v = get(c, &format!("{base}/v1/alerts?state=open")).await.json();
    v["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| (a["kind"].as_str().unwrap_or("").to_string(), a["subject"].as_str().unwrap_or("").to_string()))
        .collect()
}

async fn wait_for(
    c: &crate::http::HttpClient,
    base: &str,
    what: &str,
    want: impl Fn(&BTreeSet<(String, String)>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = open_alerts(c, base).await;
        if want(&open) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: open alerts are {open:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(open: &BTreeSet<(String, String)>, kind: &str, subject: &str) -> bool {
    open.contains(&(kind.to_string(), subject.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_default_alert_opens_and_resolves() {
    init_tracing();
    let (hook, received) = webhook().await;
    let chain = sim_chain(200, 41);
    let hook_url = hook.clone();
    let mut bed = Bed::new(Truth::Sim(chain.clone()), 4, move |c| {
        let a = &mut c.alerts;
        a.interval_ms = 100;
        a.window_secs = 3;
        a.min_samples = 5;
        a.p95_ms = 150.0;
        a.lag_blocks = 3;
        a.lag_secs = 1.0;
        a.gap_secs = 1;
        a.block_time_ms = Some(200);
        a.stale_block_times = 5.0;
        a.webhook_url = Some(hook_url);
        // Keep the faulty providers in service so their figures keep coming.
        c.routing.breaker_failures = 1_000_000;
        c.routing.breaker_error_rate = 1.0;
        c.routing.breaker_min_samples = 1_000_000;
        c.providers[3].daily_credit_budget = Some(300);
    })
    .await;
    let (api, base) = bed.serve_api().await;
    let c = client();
    bed.follow(0);
    bed.settle(Duration::from_secs(30)).await;
    let runner = bed.spawn_chain(Duration::from_millis(200));

    // Provider faults: p1 fails 60 % of calls, p2 answers in 300 ms, p3 lags 10 blocks;
    // p4's 300-credit daily budget is spent by its head polls within seconds.
    bed.proxies[0]
        .set_script(rule(r#"{"seed": 1, "rules": [{"probability": 0.6, "fault": {"kind": "http", "status": 500}}]}"#));
    bed.proxies[1].set_script(rule(r#"{"rules": [{"fault": {"kind": "delay", "ms": 300}}]}"#));
    bed.proxies[2].set_script(rule(r#"{"rules": [{"fault": {"kind": "head_lag", "blocks": 10}}]}"#));
    wait_for(&c, &base, "provider alerts open", |o| {
        has(o, "error_rate", "p1")
            && has(o, "p95_latency", "p2")
            && has(o, "lag_blocks", "p3")
            && has(o, "lag_seconds", "p3")
            && has(o, "credits", "p4")
    })
    .await;
    for p in &bed.proxies[..3] {
        p.set_script(Script::default());
    }
    wait_for(&c, &base, "provider alerts resolve", |o| {
        !has(o, "error_rate", "p1")
            && !has(o, "p95_latency", "p2")
            && !has(o, "lag_blocks", "p3")
            && !has(o, "lag_seconds", "p3")
    })
    .await;

    // A hole below the protected top: block 50 is lost, and for now no provider serves it.
    for p in &bed.proxies {
        p.set_script(rule(
            r#"{"rules": [{"methods": ["eth_getBlockByNumber"], "from_height": 50, "to_height": 50, "fault": {"kind": "http", "status": 503}}]}"#,
        ));
    }
    sqlx::query("DELETE FROM blocks WHERE number = 50 AND canonical = 1").execute(&bed.pool).await.expect("delete");
    wait_for(&c, &base, "gap alert opens", |o| has(o, "gap_open", "")).await;
    for p in &bed.proxies {
        p.set_script(Script::default());
    }
    wait_for(&c, &base, "gap repaired, alert resolves", |o| !has(o, "gap_open", "")).await;

    // Every provider's head freezes: no new block.
    for p in &bed.proxies {
        p.set_script(rule(r#"{"rules": [{"fault": {"kind": "freeze_head"}}]}"#));
    }
    wait_for(&c, &base, "no_new_block opens", |o| has(o, "no_new_block", "")).await;
    for p in &bed.proxies {
        p.set_script(Script::default());
    }
    wait_for(&c, &base, "no_new_block resolves", |o| !has(o, "no_new_block", "")).await;

    // The credit alert resolves when the threshold allows the spend (budgets reset at midnight).
    let mut cfg = blockstreamer::config::AlertsConfig { credits_fraction: 1e9, ..Default::default() };
    cfg.window_secs = 3;
    let mut ev = Evaluator::new(bed.app.store.clone(), Some(bed.app.fleet.clone()), cfg, None).expect("evaluator");
    assert!(ev.load_open().await.expect("load") >= 1);
    let verdicts = ev.tick().await.expect("tick");
    assert!(verdicts.iter().any(|v| v.kind.as_str() == "credits" && v.subject == "p4" && !v.firing));
    wait_for(&c, &base, "credits resolves", |o| !has(o, "credits", "p4")).await;

    // Every kind has a resolved row with start, end, value, peak and threshold.
    let all = get(&c, &format!("{base}/v1/alerts?limit=1000")).await.json();
    let rows = all["alerts"].as_array().expect("alerts");
    for kind in ["error_rate", "p95_latency", "lag_blocks", "lag_seconds", "gap_open", "credits", "no_new_block"] {
        let r = rows
            .iter()
            .find(|r| r["kind"] == kind && r["state"] == "resolved")
            .unwrap_or_else(|| panic!("no resolved {kind} alert in {rows:?}"));
        assert!(r["ended_at_ms"].as_i64() >= r["started_at_ms"].as_i64(), "{r}");
        assert!(r["value"].as_f64().is_some() && r["threshold"].as_f64().is_some(), "{r}");
        assert!(r["peak"].as_f64() >= r["value"].as_f64(), "{r}");
    }
    // The webhook got both edges of each (after one failed delivery that was retried).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = received.lock().expect("hook").clone();
        let edges: BTreeSet<(String, String)> = got
            .iter()
            .map(|v| (v["alert"]["kind"].as_str().unwrap_or("").into(), v["event"].as_str().unwrap_or("").into()))
            .collect();
        let want = ["error_rate", "p95_latency", "lag_blocks", "gap_open", "no_new_block"];
        if want.iter().all(|k| {
            edges.contains(&((*k).into(), "opened".into())) && edges.contains(&((*k).into(), "resolved".into()))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "webhook edges: {edges:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runner.abort();
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}
