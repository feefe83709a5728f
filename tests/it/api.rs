//! The HTTP API over a fixture database (every route's happy path and error cases, provider
//! numbers against SQL, /metrics, openapi) and over a live run (readiness, the stream).

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstreamer::api::{ApiOptions, ApiServer, ApiState};
use blockstreamer::app::{App, AppOptions};
use blockstreamer::sim::{self, SimChain, SimOptions, SimProvider, SimProviderOptions};
use blockstreamer::store::Store;
use serde_json::Value;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::helpers::{TempDb, init_tracing, inspect, scalar_i64, spawn_follow, temp_db};
use crate::http::{self, client, get, parse_prometheus};

/// A database with 0..=N blocks of a simulated chain, a depth-3 reorg (orphaned blocks kept)
/// and the telemetry of fetching it through two providers `a` and `b`.
pub async fn fixture_db() -> TempDb {
    let chain = SimChain::new(SimOptions {
        prefill: 60,
        reorg_probability: 0.0,
        block_time: Duration::from_secs(3600),
        ..SimOptions::default()
    });
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        servers.push(sim::serve(chain.clone(), SimProviderOptions { name: name.into(), lag: 0 }).await.expect("serve"));
    }
    let urls: Vec<String> = servers.iter().map(SimProvider::url).collect();
    let db = temp_db();
    let mut config = config_for(&urls, &["a", "b"]);
    config.poll_interval_ms = 50;
    config.api.enabled = false;
    config.alerts.enabled = false;
    config.index.contracts = vec![blockstreamer::app::demo_contract()];
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    app.backfill(0, 60, &cancel).await.expect("backfill");
    let task = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    chain.reorg(3);
    let deadline = Instant::now() + Duration::from_secs(15);
    while scalar_i64(&pool, "SELECT count(*) FROM reorgs").await < 1
        || scalar_i64(&pool, "SELECT max(number) FROM canonical_blocks").await < 61
    {
        assert!(Instant::now() < deadline, "fixture reorg recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let _ = task.await;
    pool.close().await;
    match Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => panic!("app still shared"),
    }
    for s in &servers {
        s.stop();
    }
    db
}

/// Serve `db` without a fleet (what `blockstreamer serve` does) on a free loopback port.
pub async fn serve_db(db: &TempDb, opts: ApiOptions) -> (ApiServer, Store, String) {
    let store = Store::open_read_only(&db.path, blockstreamer::store::Access::ReadOnly).await.expect("open");
    let state = ApiState::new(store.clone(), None, opts);
    let server =
        ApiServer::start("127.0.0.1:0".parse().expect("addr"), state, &CancellationToken::new()).await.expect("api");
    let base = format!("http://{}", server.addr());
    (server, store, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_over_a_fixture_db() {
    init_tracing();
    let db = fixture_db().await;
    let (server, store, base) = serve_db(&db, ApiOptions::default()).await;
    assert!(server.addr().ip().is_loopback());
    let c = client();
    let pool = inspect(&db.path).await;
    let tip = u64::try_from(scalar_i64(&pool, "SELECT max(number) FROM canonical_blocks").await).expect("tip");

    // Blocks: latest, by number, by hash; numbers are integers, hashes 0x hex.
    let latest = get(&c, &format!("{base}/v1/blocks/latest")).await;
    assert_eq!(latest.status, 200);
    let latest = latest.json();
    assert_eq!(latest["number"].as_u64(), Some(tip));
    assert!(latest["hash"].as_str().is_some_and(|h| h.len() == 66 && h.starts_with("0x")));
    let b10 = get(&c, &format!("{base}/v1/blocks/10")).await.json();
    let db10: String =
        sqlx::query_scalar("SELECT hash FROM canonical_blocks WHERE number = 10").fetch_one(&pool).await.expect("hash");
    assert_eq!(b10["hash"].as_str(), Some(db10.as_str()));
    assert_eq!(b10["canonical"], Value::Bool(true));
    assert_eq!(b10["hash_verified"], Value::Bool(true));
    let by_hash = get(&c, &format!("{base}/v1/blocks/{db10}")).await.json();
    assert_eq!(by_hash, b10);
    // An orphaned block is reachable by hash and marked.
    let orphan: String = sqlx::query_scalar("SELECT '0x' || lower(hex(hash)) FROM blocks WHERE canonical = 0 LIMIT 1")
        .fetch_one(&pool)
        .await
        .expect("orphan");
    let o = get(&c, &format!("{base}/v1/blocks/{orphan}")).await;
    assert_eq!(o.status, 200);
    assert_eq!(o.json()["canonical"], Value::Bool(false));

    // Transactions of a block, and one by hash.
    let txs = get(&c, &format!("{base}/v1/blocks/10/transactions")).await.json();
    let list = txs["transactions"].as_array().expect("transactions");
    assert_eq!(Some(list.len() as u64), b10["tx_count"].as_u64());
    assert!(!list.is_empty(), "the simulated chain puts transactions in every block");
    let t0 = &list[0];
    assert!(t0["value"].is_string(), "wei amounts are decimal strings");
    let th = t0["hash"].as_str().expect("tx hash");
    let t = get(&c, &format!("{base}/v1/transactions/{th}")).await;
    assert_eq!(t.status, 200);
    let t = t.json();
    assert_eq!(t["block_number"].as_u64(), Some(10));
    assert_eq!(t["from"], t0["from"]);
    assert_eq!(t["canonical"], Value::Bool(true));

    // Ranges: walk with the cursor, ascending and descending.
    let mut seen = Vec::new();
    let mut url = format!("{base}/v1/blocks?from=5&to=20&limit=4");
    loop {
        let page = get(&c, &url).await.json();
        for b in page["blocks"].as_array().expect("blocks") {
            seen.push(b["number"].as_u64().expect("number"));
        }
        match page["next_cursor"].as_str() {
            Some(cur) => url = format!("{base}/v1/blocks?from=5&to=20&limit=4&cursor={cur}"),
            None => break,
        }
    }
    assert_eq!(seen, (5..=20).collect::<Vec<u64>>());
    let desc = get(&c, &format!("{base}/v1/blocks?order=desc&limit=3")).await.json();
    let nums: Vec<u64> =
        desc["blocks"].as_array().expect("blocks").iter().filter_map(|b| b["number"].as_u64()).collect();
    assert_eq!(nums, vec![tip, tip - 1, tip - 2]);
    let capped = get(&c, &format!("{base}/v1/blocks?limit=5000")).await.json();
    assert!(capped["blocks"].as_array().is_some_and(|a| a.len() <= 1000));

    // Reorgs and gaps.
    let reorgs = get(&c, &format!("{base}/v1/reorgs")).await.json();
    let r = &reorgs["reorgs"][0];
    assert_eq!(r["depth"].as_u64(), Some(3));
    assert!(r["fork_hash"].as_str().is_some_and(|h| h.starts_with("0x")));
    let gaps = get(&c, &format!("{base}/v1/gaps")).await.json();
    assert_eq!(gaps["missing"].as_array().map(Vec::len), Some(0));
    assert_eq!(gaps["tip"].as_u64(), Some(tip));

    // Errors: 400 says what is wrong, 404 for unknown things, always JSON.
    let h0 = format!("0x{}", "00".repeat(32));
    for (path, status, code) in [
        ("/v1/blocks/abc", 400, "bad_request"),
        ("/v1/blocks/-1", 400, "bad_request"),
        ("/v1/blocks/0x1234", 400, "bad_request"),
        ("/v1/blocks/99999999", 404, "not_found"),
        ("/v1/blocks/9223372036854775808", 400, "bad_request"),
        ("/v1/blocks?limit=0", 400, "bad_request"),
        ("/v1/blocks?from=9&to=3", 400, "bad_request"),
        ("/v1/blocks?from=x", 400, "bad_request"),
        ("/v1/blocks?bogus=1", 400, "bad_request"),
        ("/v1/blocks?order=sideways", 400, "bad_request"),
        ("/v1/transactions/0x12", 400, "bad_request"),
        ("/v1/blocks/99999999/transactions", 404, "not_found"),
        ("/v1/providers/nope", 404, "not_found"),
        ("/v1/providers/nope/requests", 404, "not_found"),
        ("/v1/alerts?state=maybe", 400, "bad_request"),
        ("/v1/nothing-here", 404, "not_found"),
    ] {
        let r = get(&c, &format!("{base}{path}")).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.error_code(), code, "{path}");
    }
    let r = get(&c, &format!("{base}/v1/transactions/{h0}")).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = get(&c, &format!("{base}/v1/blocks/{h0}")).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));

    // Providers: both listed; each window equals a direct query of the raw rows over the same
    // minute-aligned bounds (counts exact; percentiles are the histogram bucket bounds).
    let prov = get(&c, &format!("{base}/v1/providers")).await.json();
    let end = prov["windows_end_ms"].as_i64().expect("windows_end_ms");
    let bounds: Vec<i64> =
        sqlx::query_scalar("SELECT ub_us FROM latency_buckets ORDER BY ub_us").fetch_all(&pool).await.expect("buckets");
    let bucket = |us: i64| bounds.iter().copied().find(|b| *b >= us).expect("a bucket");
    let list = prov["providers"].as_array().expect("providers");
    assert_eq!(list.len(), 2);
    for p in list {
        let name = p["name"].as_str().expect("name");
        for label in ["1m", "5m", "1h"] {
            let w = &p["windows"][label];
            let since = prov["windows_since_ms"][label].as_i64().expect("since");
            let rows = sqlx::query(
                "SELECT r.outcome, r.latency_us FROM provider_requests r JOIN providers p ON p.id = r.provider_id
                 WHERE p.name = ?1 AND r.ts_ms >= ?2 AND r.ts_ms < ?3 AND r.outcome <> 'cancelled'",
            )
            .bind(name)
            .bind(since)
            .bind(end)
            .fetch_all(&pool)
            .await
            .expect("rows");
            let outcomes: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let requests = outcomes.len() as u64;
            let ok: Vec<i64> = outcomes.iter().filter(|(o, _)| o == "ok").map(|(_, l)| *l).collect();
            let throttled = outcomes.iter().filter(|(o, _)| o == "rate_limited").count() as u64;
            let errors = requests - ok.len() as u64 - throttled;
            assert_eq!(w["requests"].as_u64(), Some(requests), "{name} {label} requests");
            assert_eq!(w["errors"].as_u64(), Some(errors), "{name} {label} errors");
            assert_eq!(w["throttled"].as_u64(), Some(throttled), "{name} {label} throttled");
            let mut sorted = ok.clone();
            sorted.sort_unstable();
            // Nearest rank (the smallest k with k / n >= pct / 100), reported as its bucket bound.
            let rank = |pct: usize| -> Option<f64> {
                if sorted.is_empty() {
                    return None;
                }
                let k = (pct * sorted.len()).div_ceil(100).clamp(1, sorted.len());
                Some(bucket(sorted[k - 1]) as f64 / 1000.0)
            };
            assert_eq!(w["p50_ms"].as_f64(), rank(50), "{name} {label} p50");
            assert_eq!(w["p95_ms"].as_f64(), rank(95), "{name} {label} p95");
            assert_eq!(w["p99_ms"].as_f64(), rank(99), "{name} {label} p99");
            // Within 10 % of the exact percentile.
            if let (Some(b), false) = (rank(95), sorted.is_empty()) {
                let exact = sorted[(95 * sorted.len()).div_ceil(100).clamp(1, sorted.len()) - 1] as f64 / 1000.0;
                assert!(b >= exact && b <= exact * 1.1 + 0.1, "{name} {label}: bucket {b} vs exact {exact}");
            }
        }
        assert!(p["windows"]["1h"]["requests"].as_u64().is_some_and(|n| n > 0), "{name} has telemetry");
        assert_eq!(p["state"].as_str(), Some("unknown"), "no fleet in serve mode");
    }
    // The user-facing view computes the same figures.
    let view: i64 =
        sqlx::query_scalar("SELECT sum(requests) FROM provider_health_1h").fetch_one(&pool).await.expect("view");
    assert!(view > 0);
    let one = get(&c, &format!("{base}/v1/providers/a")).await.json();
    assert_eq!(one["name"].as_str(), Some("a"));
    let page1 = get(&c, &format!("{base}/v1/providers/a/requests?limit=5")).await.json();
    let reqs = page1["requests"].as_array().expect("requests");
    assert_eq!(reqs.len(), 5);
    let cur = page1["next_cursor"].as_str().expect("cursor");
    let page2 = get(&c, &format!("{base}/v1/providers/a/requests?limit=5&cursor={cur}")).await.json();
    let first2 = page2["requests"][0]["id"].as_i64().expect("id");
    assert!(first2 < reqs[4]["id"].as_i64().expect("id"), "pages do not overlap");

    // Operating routes.
    assert_eq!(get(&c, &format!("{base}/healthz")).await.status, 200);
    let ready = get(&c, &format!("{base}/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(get(&c, &format!("{base}/v1/alerts")).await.json()["alerts"].as_array().map(Vec::len), Some(0));
    let spec = get(&c, &format!("{base}/openapi.json")).await.json();
    // The router is built from the route table, so the table is what is served: openapi.json
    // documents exactly those (method, path) pairs.
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            documented.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let mut served: Vec<(String, String)> =
        blockstreamer::api::routes::served().into_iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    documented.sort_unstable();
    served.sort_unstable();
    assert_eq!(documented, served, "openapi.json describes every served route, and only those");
    let metrics = get(&c, &format!("{base}/metrics")).await;
    assert_eq!(metrics.status, 200);
    let names = parse_prometheus(&metrics.text());
    for n in ["blockstreamer_stored_head", "process_resident_memory_bytes", "process_cpu_seconds_total"] {
        assert!(names.iter().any(|x| x == n), "{n} in /metrics");
    }
    // The admin routes refuse without a configured key.
    let r = get(&c, &format!("{base}/v1/admin/config")).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));

    // SQL: JSON and CSV.
    let r = http::sql(&c, &base, "SELECT number, hash FROM canonical_blocks ORDER BY number LIMIT 3").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["columns"], serde_json::json!(["number", "hash"]));
    assert_eq!(v["rows"][0][0].as_u64(), Some(0));
    let body = serde_json::json!({ "sql": "SELECT number FROM canonical_blocks WHERE number < ?1 ORDER BY 1", "params": [2], "format": "csv" });
    let r = http::post(&c, &format!("{base}/v1/sql"), body.to_string(), &[]).await;
    assert_eq!(r.text(), "number\r\n0\r\n1\r\n");
    server.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_serves_readiness_providers_and_metrics() {
    init_tracing();
    let mut bed = crate::bed::Bed::new(crate::bed::Truth::Sim(crate::bed::sim_chain(20, 7)), 2, |c| {
        c.alerts.enabled = false;
        c.providers[0].max_rps = Some(100.0);
    })
    .await;
    let (api, base) = bed.serve_api().await;
    let c = client();
    // Not ready before anything is stored.
    let r = get(&c, &format!("{base}/readyz")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["reasons"].as_array().is_some_and(|a| !a.is_empty()));
    bed.follow(0);
    bed.settle(Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&c, &format!("{base}/readyz")).await;
        if r.status == 200 {
            assert_eq!(r.json()["health"]["status"].as_str(), Some("ok"));
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Telemetry is flushed every 200 ms and the windows are shared for a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let prov = loop {
        let prov = get(&c, &format!("{base}/v1/providers")).await.json();
        if prov["providers"][0]["windows"]["1m"]["requests"].as_u64().is_some_and(|n| n > 0) {
            break prov;
        }
        assert!(Instant::now() < deadline, "no telemetry in the 1m window: {prov}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for p in prov["providers"].as_array().expect("providers") {
        assert_eq!(p["state"].as_str(), Some("healthy"), "{p}");
        assert_eq!(p["breaker"].as_str(), Some("closed"));
        assert!(p["score"].as_f64().is_some_and(|s| s > 0.0));
        assert!(p["score_parts"]["weight"].as_f64().is_some());
    }
    assert_eq!(prov["strategy"].as_str(), Some("best"));
    let p1 = &prov["providers"][0];
    assert_eq!(p1["rate_limit_usage"]["limit_rps"].as_f64(), p1["rate_limit_rps"].as_f64());
    let used = p1["rate_limit_usage"]["fraction"].as_f64().expect("usage");
    assert!(used > 0.0 && used < 1.0, "p1 polls ~10/s against 100 rps: {used} in {p1}");
    assert!(prov["providers"][1]["rate_limit_usage"].is_null(), "no limit, no usage");
    let m = get(&c, &format!("{base}/metrics")).await.text();
    let names = parse_prometheus(&m);
    for n in [
        "blockstreamer_provider_requests_total",
        "blockstreamer_provider_request_duration_seconds_bucket",
        "blockstreamer_provider_head",
        "blockstreamer_provider_lag_blocks",
        "blockstreamer_provider_breaker_state",
        "blockstreamer_fleet_head",
        "blockstreamer_stored_head",
        "blockstreamer_blocks_stored_total",
        "blockstreamer_telemetry_dropped",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in /metrics");
    }
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_against_anvil_serves_blocks_transactions_and_the_stream() {
    init_tracing();
    let anvil = crate::helpers::Anvil::start(&[]).await;
    anvil.mine_with_txs(20, 5).await;
    let mut bed = crate::bed::Bed::new(crate::bed::Truth::Anvil(anvil), 2, |c| {
        c.alerts.enabled = false;
        // anvil_reorg keeps the height and mines nothing after: only header polls see it.
        c.heads.poll = blockstreamer::config::HeadPoll::Header;
    })
    .await;
    let (api, base) = bed.serve_api().await;
    let c = client();
    bed.follow(0);
    bed.settle(Duration::from_secs(30)).await;
    let crate::bed::Truth::Anvil(anvil) = &*bed.truth else { unreachable!("anvil bed") };
    let head = anvil.head().await;

    // Blocks and transactions equal anvil's.
    let latest = get(&c, &format!("{base}/v1/blocks/latest")).await.json();
    assert_eq!(latest["number"].as_u64(), Some(head));
    assert_eq!(latest["hash"], anvil.block(head, false).await["hash"]);
    let truth = anvil.block(10, true).await;
    let txs = get(&c, &format!("{base}/v1/blocks/10/transactions")).await.json();
    let ours = txs["transactions"].as_array().expect("transactions");
    let theirs = truth["transactions"].as_array().expect("anvil transactions");
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours.len(), 5);
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o["hash"], t["hash"]);
        let one = get(&c, &format!("{base}/v1/transactions/{}", t["hash"].as_str().expect("hash"))).await.json();
        assert_eq!(one["block_number"].as_u64(), Some(10));
        assert_eq!(one["from"], t["from"]);
        assert_eq!(one["to"], t["to"]);
        let value =
            u128::from_str_radix(t["value"].as_str().expect("value").trim_start_matches("0x"), 16).expect("hex");
        assert_eq!(one["value"].as_str(), Some(value.to_string().as_str()));
        assert_eq!(one["nonce"].as_u64(), Some(crate::helpers::hex_u64(&t["nonce"])));
    }
    let r = get(&c, &format!("{base}/readyz")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let prov = get(&c, &format!("{base}/v1/providers")).await.json();
    assert!(prov["providers"].as_array().is_some_and(|a| a.iter().all(|p| p["state"] == "healthy")), "{prov}");

    // The stream from head - 2, then a depth-2 reorg on anvil while connected.
    let from = head - 2;
    let mut s = crate::http::Sse::open(&c, &format!("{base}/v1/stream/blocks?from={from}"), None).await;
    let mut chain: std::collections::BTreeMap<u64, String> = std::collections::BTreeMap::new();
    while chain.keys().next_back() != Some(&head) {
        let ev = s.next(Duration::from_secs(10)).await.expect("replayed block");
        assert_eq!(ev.event, "block");
        let v: Value = serde_json::from_str(&ev.data).expect("json");
        chain.insert(v["number"].as_u64().expect("n"), v["hash"].as_str().expect("h").to_string());
    }
    anvil.reorg(2).await;
    bed.settle(Duration::from_secs(30)).await;
    let new_head = anvil.head().await;
    let ev = s.next(Duration::from_secs(10)).await.expect("reorg event");
    assert_eq!(ev.event, "reorg", "{ev:?}");
    let v: Value = serde_json::from_str(&ev.data).expect("json");
    let drop_from = v["drop_from"].as_u64().expect("drop_from");
    assert_eq!(v["drop_to"].as_u64(), Some(head));
    assert_eq!(drop_from, head - 1, "depth 2");
    chain.retain(|n, _| *n < drop_from);
    while chain.keys().next_back() != Some(&new_head) {
        let ev = s.next(Duration::from_secs(10)).await.expect("replacement block");
        assert_eq!(ev.event, "block");
        let v: Value = serde_json::from_str(&ev.data).expect("json");
        chain.insert(v["number"].as_u64().expect("n"), v["hash"].as_str().expect("h").to_string());
    }
    for (n, h) in &chain {
        assert_eq!(anvil.block(*n, false).await["hash"].as_str(), Some(h.as_str()), "block {n} equals anvil's");
    }
    drop(s);
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}
