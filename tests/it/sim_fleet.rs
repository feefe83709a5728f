//! The simulated fleet end to end: telemetry rows equal the calls providers saw; a reorg deeper
//! than the limit stops ingest loudly; shallow reorgs are followed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::ingest::IngestError;
use blockstreamer::sim::{self, SimChain, SimOptions, SimProvider, SimProviderOptions};
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::helpers::{init_tracing, inspect, integrity_ok, scalar_i64, spawn_follow, temp_db};

async fn fleet(chain: &Arc<SimChain>, n: usize) -> Vec<SimProvider> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            sim::serve(chain.clone(), SimProviderOptions { name: format!("sim{i}"), lag: 0 }).await.expect("serve"),
        );
    }
    out
}

fn quiet_chain(prefill: u64) -> Arc<SimChain> {
    SimChain::new(SimOptions {
        prefill,
        reorg_probability: 0.0,
        block_time: Duration::from_secs(3600),
        ..SimOptions::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_rows_equal_calls_seen() {
    init_tracing();
    let chain = quiet_chain(500);
    let servers = fleet(&chain, 3).await;
    let urls: Vec<String> = servers.iter().map(SimProvider::url).collect();
    let db = temp_db();
    let mut config = config_for(&urls, &["a", "b", "c"]);
    config.poll_interval_ms = 50;
    let app = App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start");
    let cancel = CancellationToken::new();
    app.backfill(0, 500, &cancel).await.expect("backfill");
    // Let a few head polls happen too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.shutdown().await;
    let seen: u64 = servers.iter().map(SimProvider::calls).sum();
    let pool = inspect(&db.path).await;
    let rows = u64::try_from(scalar_i64(&pool, "SELECT count(*) FROM provider_requests").await).expect("rows");
    // A hedge cancelled (or a connection refused) before its request left is a row the
    // provider never saw; every other row is exactly one call it saw.
    let unsent = u64::try_from(
        scalar_i64(&pool, "SELECT count(*) FROM provider_requests WHERE outcome IN ('cancelled', 'connect')").await,
    )
    .expect("rows");
    assert!(
        rows - unsent <= seen && seen <= rows,
        "one provider_requests row per call the providers saw: {rows} rows ({unsent} unsent), {seen} calls"
    );
    let block_rows = scalar_i64(&pool, "SELECT count(*) FROM provider_requests_view WHERE method = 'eth_getBlockByNumber' AND block_number IS NOT NULL AND outcome = 'ok'").await;
    assert_eq!(block_rows, 501, "each height fetched once");
    let polls = scalar_i64(&pool, "SELECT count(*) FROM provider_requests WHERE head_reported IS NOT NULL").await;
    assert!(polls >= 3, "head polls recorded with the head they reported");
    let sightings =
        scalar_i64(&pool, "SELECT count(DISTINCT provider) FROM block_sightings_view WHERE number = 500").await;
    assert_eq!(sightings, 3, "each provider's sighting of the head");
    let firsts = scalar_i64(&pool, "SELECT count(*) FROM block_sightings_view WHERE number = 500 AND first").await;
    assert_eq!(firsts, 1);
    integrity_ok(&pool).await;
    for s in &servers {
        s.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_reorg_stops_ingest_loudly() {
    init_tracing();
    let chain = quiet_chain(50);
    let servers = fleet(&chain, 2).await;
    let urls: Vec<String> = servers.iter().map(SimProvider::url).collect();
    let db = temp_db();
    let mut config = config_for(&urls, &["a", "b"]);
    config.poll_interval_ms = 50;
    config.max_reorg_depth = 5;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    let task = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar_i64(&pool, "SELECT coalesce(max(number), -1) FROM canonical_blocks").await < 50 {
        assert!(Instant::now() < deadline, "initial sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A shallow reorg is followed ...
    chain.reorg(3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar_i64(&pool, "SELECT count(*) FROM reorgs").await < 1 {
        assert!(Instant::now() < deadline, "shallow reorg recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scalar_i64(&pool, "SELECT depth FROM reorgs").await, 3);
    let before: Vec<(i64, String)> = sqlx::query_as("SELECT number, hash FROM canonical_blocks ORDER BY number")
        .fetch_all(&pool)
        .await
        .expect("chain");
    // ... a deep one is refused, and nothing stored changes.
    chain.reorg(9);
    let res = tokio::time::timeout(Duration::from_secs(10), task).await.expect("ingest stops").expect("join");
    match res {
        Err(blockstreamer::app::AppError::Ingest(IngestError::DeepReorg { limit, .. })) => {
            assert_eq!(limit, 5)
        }
        other => panic!("expected a deep-reorg error, got {other:?}"),
    }
    let after: Vec<(i64, String)> = sqlx::query_as("SELECT number, hash FROM canonical_blocks ORDER BY number")
        .fetch_all(&pool)
        .await
        .expect("chain");
    assert_eq!(before, after, "history is not rewritten");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM reorgs").await, 1);
    assert_eq!(app.health().0.as_str(), "reorg_too_deep", "the stop is visible in the health state");
    let app = Arc::try_unwrap(app).expect("sole owner");
    app.shutdown().await;
    integrity_ok(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_reorging_simulated_chain() {
    init_tracing();
    let chain = SimChain::new(SimOptions {
        prefill: 20,
        reorg_probability: 0.15,
        reorg_max_depth: 3,
        block_time: Duration::from_millis(40),
        seed: 42,
        ..SimOptions::default()
    });
    let servers = fleet(&chain, 3).await;
    let urls: Vec<String> = servers.iter().map(SimProvider::url).collect();
    let db = temp_db();
    let mut config = config_for(&urls, &["a", "b", "c"]);
    config.poll_interval_ms = 30;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    // The clock has its own token: stopping the chain must not stop ingest.
    let clock_stop = CancellationToken::new();
    let clock = tokio::spawn(sim::run_clock(chain.clone(), clock_stop.clone()));
    let task = spawn_follow(&app, &cancel);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Stop the chain, let ingest settle, then compare with the truth.
    clock_stop.cancel();
    let _ = clock.await;
    let truth_head = chain.head_number();
    let pool = inspect(&db.path).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut equal = true;
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT number, hash FROM canonical_blocks ORDER BY number")
            .fetch_all(&pool)
            .await
            .expect("chain");
        let head_now = chain.head_number();
        if rows.len() as u64 != head_now + 1 {
            equal = false;
        } else {
            for (n, h) in &rows {
                let want = chain.block(u64::try_from(*n).expect("u64")).map(|b| format!("{:#x}", b.hash));
                if want.as_deref() != Some(h.as_str()) {
                    equal = false;
                    break;
                }
            }
        }
        if equal && head_now >= truth_head {
            break;
        }
        assert!(Instant::now() < deadline, "DB converges to the simulated chain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.expect("join").expect("follow ok");
    assert!(chain.reorgs() >= 3, "the chain reorganised ({} times)", chain.reorgs());
    let recorded = scalar_i64(&pool, "SELECT count(*) FROM reorgs").await;
    assert!(recorded >= 1, "reorgs recorded");
    let app = Arc::try_unwrap(app).expect("sole owner");
    let inv = app.store.chain_invariants().await.expect("inv");
    app.shutdown().await;
    assert!(inv.ok(), "{inv:?}");
}
