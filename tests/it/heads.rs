//! Head tracking against a mining anvil: `newHeads` subscriptions (reconnect after the socket
//! dies, fall back to polls when the subscription goes silent, reorgs arriving as
//! notifications), and head polls by `eth_blockNumber` with each block fetched once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::fault::{FaultProxy, Script};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, canonical_hashes, init_tracing, inspect, integrity_ok, spawn_follow, temp_db};
use crate::relay::Relay;

async fn count(pool: &SqlitePool, sql: &'static str, provider: &str) -> i64 {
    sqlx::query_scalar(sql).bind(provider).fetch_one(pool).await.unwrap_or(0)
}

async fn events(pool: &SqlitePool, provider: &str, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM provider_events_view WHERE provider = ?1 AND kind = ?2")
        .bind(provider)
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Wait until `provider` has more than `n` events of `kind`; returns how long it took.
async fn wait_event(pool: &SqlitePool, provider: &str, kind: &str, n: i64, limit: Duration) -> Duration {
    let start = Instant::now();
    while events(pool, provider, kind).await <= n {
        assert!(start.elapsed() < limit, "no new {kind} event for {provider} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// Wait until the stored canonical chain matches anvil's from 0 to its head.
async fn wait_converged(anvil: &Anvil, pool: &SqlitePool, limit: Duration) {
    let start = Instant::now();
    loop {
        let head = anvil.head().await;
        let mut want = Vec::new();
        for n in head.saturating_sub(40)..=head {
            want.push((n, anvil.block(n, false).await["hash"].as_str().expect("hash").to_string()));
        }
        if canonical_hashes(pool, head.saturating_sub(40), head + 3).await == want {
            return;
        }
        assert!(start.elapsed() < limit, "not converged with anvil within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every height from 0 to the stored tip is stored once, canonical.
async fn no_hole(pool: &SqlitePool) {
    let (n, lo, hi): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), min(number), max(number) FROM blocks WHERE canonical = 1")
            .fetch_one(pool)
            .await
            .expect("count");
    assert_eq!((lo, n), (0, hi + 1), "canonical heights 0..={hi} all present once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_reconnect_fall_back_when_silent_and_carry_reorgs() {
    init_tracing();
    let anvil = Anvil::start(&["--block-time", "1"]).await;
    let relay = Relay::start(format!("127.0.0.1:{}", anvil.port).parse().expect("addr")).await;
    let db = temp_db();
    // p1: calls over HTTP, heads by subscription through the relay; p2: plain HTTP;
    // p3: everything over one WebSocket URL (calls and subscription).
    let ws_direct = format!("ws://127.0.0.1:{}", anvil.port);
    let mut config = config_for(&[anvil.url(), anvil.url(), ws_direct], &["p1", "p2", "p3"]);
    config.providers[0].ws_url = Some(relay.ws_url());
    config.poll_interval_ms = 200;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    let follower = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    wait_event(&pool, "p1", "subscribed", 0, Duration::from_secs(10)).await;
    wait_event(&pool, "p3", "subscribed", 0, Duration::from_secs(10)).await;
    wait_converged(&anvil, &pool, Duration::from_secs(10)).await;
    let heads_of = |name: &str| app.fleet.status().into_iter().find(|p| p.name == name).map(|p| p.heads);
    assert_eq!(
        (heads_of("p1"), heads_of("p2"), heads_of("p3")),
        (Some("subscription"), Some("polled"), Some("subscription"))
    );
    let p1_polls = "SELECT count(*) FROM provider_requests_view WHERE provider = ?1 AND method = 'eth_blockNumber'";
    let before = count(&pool, p1_polls, "p1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(count(&pool, p1_polls, "p1").await - before <= 1, "a live subscription replaces polling");

    // The socket dies for 3 s while anvil mines: lost, polled, resubscribed, no height missing.
    let subscribed = events(&pool, "p1", "subscribed").await;
    relay.stop();
    wait_event(&pool, "p1", "subscription_lost", 0, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.resume().await;
    let took = wait_event(&pool, "p1", "subscribed", subscribed, Duration::from_secs(10)).await;
    eprintln!("resubscribed {took:?} after the relay came back");
    wait_converged(&anvil, &pool, Duration::from_secs(10)).await;
    no_hole(&pool).await;

    // Muted: the connection stays open but no head comes while the others advance. Within
    // silent_blocks (3) block times (1 s) it is declared silent and polled instead.
    relay.mute(true);
    let muted_at = Instant::now();
    wait_event(&pool, "p1", "subscription_silent", 0, Duration::from_secs(8)).await;
    let silent_after = muted_at.elapsed();
    assert!(silent_after <= Duration::from_millis(5500), "silence found after {silent_after:?}");
    let before = count(&pool, p1_polls, "p1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(count(&pool, p1_polls, "p1").await > before, "a silent subscription's provider is polled");
    assert_eq!(heads_of("p1"), Some("silent"));

    // A reorg at the same height arrives as notifications (p3 has the header, hash and all).
    wait_converged(&anvil, &pool, Duration::from_secs(10)).await;
    anvil.reorg(2).await;
    wait_converged(&anvil, &pool, Duration::from_secs(5)).await;
    let reorgs: i64 = sqlx::query_scalar("SELECT count(*) FROM reorgs").fetch_one(&pool).await.expect("reorgs");
    assert!(reorgs >= 1, "the reorg was recorded");

    cancel.cancel();
    follower.await.expect("join").expect("follow ends cleanly");
    let app = Arc::try_unwrap(app).expect("sole owner");
    let inv = app.store.chain_invariants().await.expect("invariants");
    app.shutdown().await;
    assert!(inv.ok(), "{inv:?}");
    no_hole(&pool).await;
    integrity_ok(&pool).await;
    let sightings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM block_sightings s JOIN providers p ON p.id = s.provider_id WHERE p.name = 'p3'",
    )
    .fetch_one(&pool)
    .await
    .expect("sightings");
    assert!(sightings >= 5, "notifications feed block_sightings ({sightings})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_polls_by_block_number_fetch_each_block_once() {
    init_tracing();
    let anvil = Anvil::start(&["--block-time", "1"]).await;
    let proxy =
        FaultProxy::start(&anvil.url(), "127.0.0.1:0".parse().expect("addr"), Script::default()).await.expect("proxy");
    let db = temp_db();
    let mut config = config_for(&[proxy.url()], &["p1"]);
    // Polls every 100 ms: ten per block; the block itself must still be fetched once.
    config.poll_interval_ms = 100;
    config.heads.quiet_fraction = 0.0;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    let follower = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    wait_converged(&anvil, &pool, Duration::from_secs(10)).await;
    proxy.clear_log();
    let first = anvil.head().await + 1;
    tokio::time::sleep(Duration::from_secs(8)).await;
    // A same-height reorg shows when the next block does not link onto the stored tip.
    anvil.reorg(1).await;
    let reorged_at = anvil.head().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    wait_converged(&anvil, &pool, Duration::from_secs(5)).await;
    let last = anvil.head().await;
    cancel.cancel();
    follower.await.expect("join").expect("follow ends cleanly");

    let log = proxy.log();
    let polls = log.iter().filter(|c| c.method == "eth_blockNumber").count();
    let mut fetches: BTreeMap<u64, usize> = BTreeMap::new();
    for c in log.iter().filter(|c| c.method == "eth_getBlockByNumber") {
        let h = c.height.unwrap_or_else(|| panic!("a block fetch without a height (a `latest` head poll?): {c:?}"));
        *fetches.entry(h).or_default() += 1;
    }
    eprintln!("heights {first}..={last}: {polls} eth_blockNumber polls; getBlockByNumber per height {fetches:?}");
    assert!(polls >= 40, "polled by eth_blockNumber ({polls})");
    for n in first..=last {
        let f = fetches.get(&n).copied().unwrap_or(0);
        let allowed = if n == reorged_at { 2 } else { 1 };
        assert!(f >= 1 && f <= allowed, "height {n} fetched {f} times");
    }
    let app = Arc::try_unwrap(app).expect("sole owner");
    app.shutdown().await;
    no_hole(&pool).await;
    integrity_ok(&pool).await;
}
