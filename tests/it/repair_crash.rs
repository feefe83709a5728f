//! the fault matrix (docs/testing.md): gap repair while following (REPAIR-01) and a crash inside the reorg
//! transaction (CRASH-02).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockstreamer::fault::{FaultProxy, Script};
use tokio_util::sync::CancellationToken;

use crate::bed::{Bed, Truth, invariants, p99, sim_chain};
use crate::helpers::{Anvil, acks, canonical_hashes, init_tracing, inspect, integrity_ok, scalar_i64, temp_db};

/// REPAIR-01 (simulated chain): 2,000 stored blocks with 100 random heights deleted, and the
/// chain 50 blocks ahead; following starts, the tip keeps up, and every hole is refilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair01_gaps_fast_forward_repair() {
    init_tracing();
    let chain = sim_chain(2_000, 31);
    let mut bed = Bed::new(Truth::Sim(chain.clone()), 3, |_| {}).await;
    let cancel = CancellationToken::new();
    bed.app.backfill(0, 2_000, &cancel).await.expect("seed");
    let mut rng = fastrand::Rng::with_seed(31);
    let mut holes: Vec<i64> = Vec::new();
    while holes.len() < 100 {
        let h = rng.i64(1..2_000);
        if !holes.contains(&h) {
            holes.push(h);
        }
    }
    for h in &holes {
        sqlx::query("DELETE FROM blocks WHERE number = ?1").bind(h).execute(&bed.pool).await.expect("delete");
    }
    let (_, missing, ..) = invariants(&bed.pool).await;
    assert_eq!(missing, 100);
    for _ in 0..50 {
        chain.tick();
    }
    let start = bed.started.elapsed();
    bed.follow(0);
    let began = Instant::now();
    let filled = loop {
        bed.truth.advance().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, missing, ..) = invariants(&bed.pool).await;
        if missing == 0 {
            break began.elapsed();
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{missing} heights still missing after 30 s");
    };
    // a little more following after the repair
    bed.run_chain(Duration::from_millis(200), Duration::from_secs(2)).await;
    bed.settle(Duration::from_secs(10)).await;
    let caught_up = bed
        .all_samples()
        .iter()
        .find(|s| s.at >= start && s.head_lag <= 1)
        .map(|s| s.at)
        .expect("caught up with the fast-forward");
    let during: Vec<i64> = bed.samples_between(caught_up, start + filled).iter().map(|s| s.head_lag).collect();
    assert!(p99(during.clone()) <= 3, "head lag during repair: {during:?}");
    assert!(bed.all_samples().iter().all(|s| s.link_breaks == 0 && s.dups == 0), "link break or dup sampled");
    let repaired =
        scalar_i64(&bed.pool, "SELECT coalesce(sum(blocks), 0) FROM gap_repairs WHERE outcome = 'repaired'").await;
    assert_eq!(repaired, 100, "every hole logged as repaired");
    let rows =
        scalar_i64(&bed.pool, "SELECT count(*) FROM gap_repairs WHERE reason = 'missing' AND provider_id IS NOT NULL")
            .await;
    assert!(rows >= 1, "repairs name the provider that served them");
    eprintln!("repair01: 100 holes refilled in {filled:?}");
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}

fn spawn(args: &[String], failpoint: Option<&str>) -> (Child, std::sync::mpsc::Receiver<u64>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blockstreamer"));
    cmd.args(args).env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("BLOCKSTREAMER_FAILPOINT", f);
    }
    let mut child = cmd.spawn().expect("spawn");
    let out = child.stdout.take().expect("stdout");
    (child, acks(out))
}

/// CRASH-02 (anvil behind fault proxies): the process dies between demoting the old branch and
/// inserting the new one. After a restart the file holds exactly the old chain or the new one,
/// and the reorg completes within two polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash02_kill_mid_reorg_failpoint() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(40, 2).await;
    let addr = "127.0.0.1:0".parse().expect("addr");
    let p1 = FaultProxy::start(&anvil.url(), addr, Script::default()).await.expect("proxy");
    let p2 = FaultProxy::start(&anvil.url(), addr, Script::default()).await.expect("proxy");
    let db = temp_db();
    let cfg = db.dir.path().join("c.toml");
    std::fs::write(&cfg, "poll_interval_ms = 100\n").expect("config");
    let args: Vec<String> = vec![
        "run".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--rpc".into(),
        p1.url(),
        "--rpc".into(),
        p2.url(),
        "--db".into(),
        db.path.display().to_string(),
        "--from-block".into(),
        "0".into(),
    ];
    let wait_tip = |rx: &std::sync::mpsc::Receiver<u64>, want: u64| {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if rx.recv_timeout(Duration::from_millis(50)).is_ok_and(|n| n >= want) {
                return true;
            }
        }
        false
    };
    for depth in [1u64, 3, 6, 12, 30] {
        anvil.mine(2).await;
        let head = anvil.head().await;
        let (mut child, rx) = spawn(&args, Some("reorg_after_demote"));
        assert!(wait_tip(&rx, head), "depth {depth}: never caught up to {head}");
        let pool = inspect(&db.path).await;
        let before = canonical_hashes(&pool, 0, head).await;
        pool.close().await;
        anvil.reorg(depth).await;
        // The new branch is the same height; one more block makes every provider show it.
        anvil.mine(1).await;
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < end, "depth {depth}: the failpoint never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(!status.success(), "depth {depth}: child exited cleanly instead of aborting");
        // The file holds exactly the pre-reorg chain (the transaction never committed).
        let pool = inspect(&db.path).await;
        integrity_ok(&pool).await;
        let (_, missing, dups, breaks, partial) = invariants(&pool).await;
        assert_eq!((missing, dups, breaks, partial), (0, 0, 0, 0), "depth {depth}: invariants after the crash");
        let after_crash = canonical_hashes(&pool, 0, head).await;
        assert_eq!(after_crash, before, "depth {depth}: neither the old nor the new chain after the crash");
        pool.close().await;

        // Restart without the failpoint: the reorg completes promptly.
        let new_head = anvil.head().await;
        let restarted = Instant::now();
        let (mut child, rx) = spawn(&args, None);
        assert!(wait_tip(&rx, new_head), "depth {depth}: did not reach {new_head} after restart");
        let took = restarted.elapsed();
        child.kill().expect("kill");
        let _ = child.wait();
        let pool = inspect(&db.path).await;
        let stored = canonical_hashes(&pool, 0, new_head).await;
        for (n, h) in &stored {
            let truth = anvil.block(*n, false).await;
            assert_eq!(Some(h.as_str()), truth["hash"].as_str(), "depth {depth}: height {n} differs from anvil");
        }
        let reorgs = scalar_i64(&pool, "SELECT count(*) FROM reorgs").await;
        assert!(reorgs >= 1, "depth {depth}: reorg recorded");
        pool.close().await;
        assert!(took < Duration::from_secs(3), "depth {depth}: restart to reorged tip took {took:?}");
    }
}

/// REPAIR-01 again on anvil behind fault proxies: holes punched into a backfilled range are
/// refilled while following, and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair01_gaps_on_anvil() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(40, 2).await;
    anvil.mine(260).await;
    let mut bed = Bed::new(Truth::Anvil(anvil), 2, |_| {}).await;
    let cancel = CancellationToken::new();
    bed.app.backfill(0, 300, &cancel).await.expect("seed");
    for h in [3i64, 17, 18, 19, 120, 121, 250] {
        sqlx::query("DELETE FROM blocks WHERE number = ?1").bind(h).execute(&bed.pool).await.expect("delete");
    }
    let (_, missing, ..) = invariants(&bed.pool).await;
    assert_eq!(missing, 7);
    bed.follow(0);
    let began = Instant::now();
    loop {
        bed.truth.advance().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, missing, ..) = invariants(&bed.pool).await;
        if missing == 0 {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{missing} heights still missing after 30 s");
    }
    bed.settle(Duration::from_secs(10)).await;
    let repaired =
        scalar_i64(&bed.pool, "SELECT coalesce(sum(blocks), 0) FROM gap_repairs WHERE outcome = 'repaired'").await;
    assert_eq!(repaired, 7, "every hole logged as repaired");
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}
