//! REORG-01, follow mode against a mining anvil (one provider through the fault proxy): reorgs of
//! depth 1, 2, 3, 6 and 12 are mirrored in the DB within two poll intervals, exactly k blocks
//! become non-canonical (kept), one reorg row each, and no link break or duplicate is ever
//! visible to a reader sampling every 50 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::fault::{FaultProxy, Script};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, canonical_hashes, init_tracing, inspect, integrity_ok, spawn_follow, temp_db};

const POLL_MS: u64 = 250;

async fn anvil_hashes(anvil: &Anvil, from: u64, to: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for n in from..=to {
        let b = anvil.block(n, false).await;
        out.push((n, b["hash"].as_str().expect("hash").to_string()));
    }
    out
}

/// Wait until the DB's canonical chain over the last 30 heights equals anvil's; returns the time it took.
async fn wait_converged(anvil: &Anvil, pool: &sqlx::SqlitePool, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let head = anvil.head().await;
    let from = head.saturating_sub(30);
    let want = anvil_hashes(anvil, from, head).await;
    while start.elapsed() < limit {
        if canonical_hashes(pool, from, head + 5).await == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg01_follow_mirrors_shallow_reorgs() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(20, 2).await;
    let proxy =
        FaultProxy::start(&anvil.url(), "127.0.0.1:0".parse().expect("addr"), Script::default()).await.expect("proxy");
    let db = temp_db();
    let mut config = config_for(&[anvil.url(), anvil.url(), proxy.url()], &["p1", "p2", "p3"]);
    config.poll_interval_ms = POLL_MS;
    // anvil_reorg keeps the height and mines nothing after: header polls see the new hash at
    // once (`eth_blockNumber` polls would see it with the next block: tests/it/heads.rs).
    config.heads.poll = blockstreamer::config::HeadPoll::Header;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    let follower = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    assert!(wait_converged(&anvil, &pool, Duration::from_secs(20)).await.is_some(), "initial sync");
    let sampler = {
        let pool = pool.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut bad = Vec::new();
            while !cancel.is_cancelled() {
                let (_, _, dups, breaks, _): (i64, i64, i64, i64, i64) =
                    sqlx::query_as(include_str!("../../sql/checks/chain_invariants.sql"))
                        .fetch_one(&pool)
                        .await
                        .expect("invariants");
                if dups != 0 || breaks != 0 {
                    bad.push((dups, breaks));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bad
        })
    };

    let mut expected_reorgs = 0;
    let mut times = Vec::new();
    for depth in [1u64, 2, 3, 6, 12] {
        anvil.mine_with_txs(14, 2).await;
        assert!(
            wait_converged(&anvil, &pool, Duration::from_secs(10)).await.is_some(),
            "caught up before reorg {depth}"
        );
        let head = anvil.head().await;
        let old = canonical_hashes(&pool, head + 1 - depth, head).await;
        assert_eq!(old.len() as u64, depth);
        let orphans_before: i64 = sqlx::query_scalar("SELECT count(*) FROM blocks WHERE canonical = 0")
            .fetch_one(&pool)
            .await
            .expect("count");
        anvil.reorg(depth).await;
        assert_eq!(anvil.head().await, head, "anvil_reorg keeps the height");
        let took = wait_converged(&anvil, &pool, Duration::from_secs(10)).await.expect("converged after reorg");
        times.push((depth, took));
        expected_reorgs += 1;
        let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM blocks WHERE canonical = 0")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(orphans - orphans_before, i64::try_from(depth).expect("i64"), "exactly {depth} blocks demoted");
        // The old branch is kept, non-canonical, and its transactions are out of the view.
        for (n, h) in &old {
            let canonical: i64 = sqlx::query_scalar("SELECT canonical FROM blocks WHERE hash = unhex(substr(?1, 3))")
                .bind(h)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("old block {n} kept: {e}"));
            assert_eq!(canonical, 0, "old block {n} is non-canonical");
            let in_view: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions_view WHERE block_hash = ?1")
                .bind(h)
                .fetch_one(&pool)
                .await
                .expect("view");
            assert_eq!(in_view, 0, "transactions of old block {n} absent from transactions_view");
        }
        let rows = sqlx::query("SELECT depth, fork_number, old_tip_number, new_tip_number FROM reorgs ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("reorgs");
        assert_eq!(rows.len(), expected_reorgs, "one reorg row per reorg");
        let last = rows.last().expect("row");
        assert_eq!(u64::try_from(last.get::<i64, _>(0)).expect("depth"), depth);
        assert_eq!(u64::try_from(last.get::<i64, _>(1)).expect("fork"), head - depth);
        assert_eq!(u64::try_from(last.get::<i64, _>(3)).expect("new tip"), head);
    }
    cancel.cancel();
    follower.await.expect("join").expect("follow ends cleanly");
    let bad = sampler.await.expect("sampler");
    assert!(bad.is_empty(), "a reader saw dups or link breaks: {bad:?}");
    let app = Arc::try_unwrap(app).expect("sole owner");
    let inv = app.store.chain_invariants().await.expect("invariants");
    app.shutdown().await;
    assert!(inv.ok(), "{inv:?}");
    integrity_ok(&pool).await;
    eprintln!("reorg convergence times (poll interval {POLL_MS} ms): {times:?}");
    for (depth, took) in times {
        assert!(
            took <= Duration::from_millis(2 * POLL_MS),
            "depth {depth} took {took:?}, more than two poll intervals"
        );
    }
}
