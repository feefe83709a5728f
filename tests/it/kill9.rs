//! CRASH-01, the kill -9 loop: the real binary with three providers (one through the fault
//! proxy), killed at random moments during backfill and following while anvil reorganises every
//! ~40 blocks; after every restart the file is intact, has no hole, holds every acknowledged
//! height, and at the end equals anvil's chain.
//! The same for a `backfill` in bulk-load mode, whose appends go through their own connection.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use blockstreamer::fault::{Fault, FaultProxy, Rule, Script};

use crate::helpers::{Anvil, canonical_hashes, committed_tip, inspect, integrity_ok, scalar_i64, temp_db};

/// Start the binary; a thread records the highest `committed tip=N` it printed (in `acked`,
/// across runs, and in `this_run`, for this process only).
static LAST_LINES: std::sync::Mutex<std::collections::VecDeque<String>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// The child's last log lines (for failure messages).
fn last_lines() -> String {
    LAST_LINES.lock().map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

fn spawn(args: &[String], acked: Arc<AtomicU64>, this_run: Arc<AtomicU64>) -> (Child, std::thread::JoinHandle<()>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn blockstreamer");
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(mut l) = LAST_LINES.lock() {
                l.push_back(line.clone());
                if l.len() > 150 {
                    l.pop_front();
                }
            }
            if let Some(n) = committed_tip(&line) {
                acked.fetch_max(n + 1, Ordering::SeqCst); // +1 so height 0 counts as acked
                this_run.fetch_max(n + 1, Ordering::SeqCst);
            }
        }
    });
    (child, reader)
}

async fn check(db: &std::path::Path, acked: u64, round: usize) -> i64 {
    let pool = inspect(db).await;
    integrity_ok(&pool).await;
    let heights = scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1").await;
    let max = scalar_i64(&pool, "SELECT coalesce(max(number), -1) FROM blocks WHERE canonical = 1").await;
    let inv: (i64, i64, i64, i64, i64) =
        sqlx::query_as(include_str!("../../sql/checks/chain_invariants.sql")).fetch_one(&pool).await.expect("inv");
    assert_eq!((inv.1, inv.2, inv.3, inv.4), (0, 0, 0, 0), "round {round}: missing, dups, link_breaks, partial");
    assert!(
        max + 1 >= i64::try_from(acked).expect("i64"),
        "round {round}: acked {} lost (stored max {max})",
        acked.saturating_sub(1)
    );
    if heights > 0 {
        assert_eq!(scalar_i64(&pool, "SELECT min(number) FROM blocks WHERE canonical = 1").await, 0);
    }
    pool.close().await;
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loop_loses_nothing() {
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(100, 5).await;
    // anvil mines ever slower as its chain grows (seconds per 1,000 blocks), so keep it short
    // and make the backfill slow instead.
    anvil.mine(1_000).await;
    // The third provider is the fault proxy (no faults) in front of the same anvil.
    let proxy =
        FaultProxy::start(&anvil.url(), "127.0.0.1:0".parse().expect("addr"), Script::default()).await.expect("proxy");
    let db = temp_db();
    let cfg = db.dir.path().join("c.toml");
    // Small batches and one fetch in flight stretch the backfill so that kills land inside it.
    std::fs::write(&cfg, "poll_interval_ms = 100\nbatch_size = 1\nconcurrency = 1\n").expect("config");
    let args: Vec<String> = vec![
        "run".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--rpc".into(),
        anvil.url(),
        "--rpc".into(),
        format!("{}/", anvil.url()),
        "--rpc".into(),
        proxy.url(),
        "--db".into(),
        db.path.display().to_string(),
        "--from-block".into(),
        "0".into(),
    ];
    // Keep mining while the binary follows, so kills land in backfill and in following.
    let stop = CancellationToken::new();
    let accts = anvil.accounts().await;
    let (from, to) = (accts[3].clone(), accts[4].clone());
    // anvil must not mine and reorganise at the same time (it can lose a block that way), so
    // every change to its chain takes this lock.
    let chain_lock = Arc::new(tokio::sync::Mutex::new(()));
    let miner = {
        let stop = stop.clone();
        let client = anvil.client.clone();
        let chain_lock = chain_lock.clone();
        tokio::spawn(async move {
            use jsonrpsee::core::client::ClientT;
            let mut i = 0u64;
            let mut rng = fastrand::Rng::with_seed(11);
            while !stop.is_cancelled() {
                // Mostly one block per 100 ms; now and then a burst of 60 that a restarted
                // process has to backfill, and every ~40 blocks a reorg of depth 1-3.
                let n = if i % 15 == 7 { "0x3c" } else { "0x1" };
                let guard = chain_lock.lock().await;
                let _ = client.request::<serde_json::Value, _>("anvil_mine", jsonrpsee::rpc_params![n]).await;
                if i % 40 == 20 {
                    let depth = rng.u64(1..=3);
                    let tx = serde_json::json!({"from": from, "to": to, "value": format!("{:#x}", 1_000 + i)});
                    let _ = client
                        .request::<serde_json::Value, _>("anvil_reorg", jsonrpsee::rpc_params![depth, vec![(tx, 0u64)]])
                        .await;
                }
                drop(guard);
                tokio::time::sleep(Duration::from_millis(100)).await;
                i += 1;
            }
        })
    };
    let acked = Arc::new(AtomicU64::new(0));
    let mut rng = fastrand::Rng::with_seed(std::env::var("KILL9_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7));
    let rounds: usize = std::env::var("KILL9_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let mut maxes = Vec::new();
    let mut behind_at_kill = Vec::new();
    for round in 0..rounds {
        let this_run = Arc::new(AtomicU64::new(0));
        if round % 2 == 0 {
            // Catching up: give the process a backlog, then kill it 30–300 ms after its first
            // acknowledged commit (so start-up is over and most of the backlog is still ahead).
            let _guard = chain_lock.lock().await;
            anvil.mine(120).await;
        }
        let head_at_start = anvil.head().await;
        let (mut child, reader) = spawn(&args, acked.clone(), this_run.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        if round % 2 == 0 {
            while this_run.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "round {round}: no commit within 120 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(30..=300))).await;
        } else {
            // Following: wait until it has caught up with the head it started behind, then kill
            // at a random moment 0.2–2 s later.
            while this_run.load(Ordering::SeqCst) < head_at_start {
                assert!(Instant::now() < deadline, "round {round}: did not catch up within 120 s:\n{}", last_lines());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(200..=2000))).await;
        }
        child.kill().expect("SIGKILL");
        let head_at_kill = anvil.head().await;
        let _ = child.wait();
        let _ = reader.join();
        let max = check(&db.path, acked.load(Ordering::SeqCst), round).await;
        maxes.push(max);
        behind_at_kill.push(i64::try_from(head_at_kill).expect("i64") - max);
    }
    stop.cancel();
    let _ = miner.await;
    // Restart once more and let it catch up to anvil's head: no hole remains.
    let head = anvil.head().await;
    let (mut child, reader) = spawn(&args, acked.clone(), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let head_hash = anvil.block(head, false).await["hash"].as_str().map(str::to_string);
    loop {
        let pool = inspect(&db.path).await;
        let max = scalar_i64(&pool, "SELECT coalesce(max(number), -1) FROM blocks WHERE canonical = 1").await;
        let tip = canonical_hashes(&pool, head, head).await;
        pool.close().await;
        if max >= i64::try_from(head).expect("i64") && tip.first().map(|(_, h)| h.clone()) == head_hash {
            break;
        }
        assert!(Instant::now() < deadline, "caught up to {head} within 120 s (at {max})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let _ = reader.join();
    let max = check(&db.path, acked.load(Ordering::SeqCst), rounds).await;
    let pool = inspect(&db.path).await;
    let heights = scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1").await;
    assert_eq!(heights, max + 1, "every height 0..={max} stored exactly once");
    // mismatch = 0: the stored canonical chain is anvil's (the reorgs were all followed)
    let stored = canonical_hashes(&pool, 0, u64::try_from(max).expect("u64")).await;
    for (n, h) in stored.iter().rev().take(300) {
        let truth = anvil.block(*n, false).await;
        assert_eq!(Some(h.as_str()), truth["hash"].as_str(), "height {n} differs from anvil after the kill loop");
    }
    eprintln!(
        "kill9: stored max after each kill: {maxes:?}; blocks behind anvil at each kill: {behind_at_kill:?}; final {max}"
    );
    assert!(behind_at_kill.iter().any(|&b| b > 5), "at least one kill landed while catching up (backfill)");
    assert!(behind_at_kill.iter().any(|&b| b <= 5), "at least one kill landed while following the tip");
}

/// Run the backfill of `args` once more to its end; the file is then intact with every height
/// up to `head`. Returns the stored maximum.
async fn finish(args: &[String], acked: &Arc<AtomicU64>, db: &std::path::Path, round: usize, head: u64) -> i64 {
    let (mut child, reader) = spawn(args, acked.clone(), Arc::new(AtomicU64::new(0)));
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    let _ = reader.join();
    assert!(status.success(), "the last backfill finished: {status}\n{}", last_lines());
    let max = check(db, acked.load(Ordering::SeqCst), round).await;
    assert_eq!(max, i64::try_from(head).expect("i64"));
    max
}

/// `backfill 0..=head` of `anvil` into `db` in bulk-load mode with small fetches (so that it
/// spans many commits), `extra` appended to its config file.
fn backfill_args(anvil: &Anvil, db: &crate::helpers::TempDb, head: u64, extra: &str) -> Vec<String> {
    let cfg = db.dir.path().join("c.toml");
    std::fs::write(&cfg, format!("bulk_load_min_blocks = 50\nbatch_size = 1\nconcurrency = 1\n{extra}"))
        .expect("config");
    [
        "backfill",
        "--config",
        &cfg.display().to_string(),
        "--rpc",
        &anvil.url(),
        "--db",
        &db.path.display().to_string(),
        "--from",
        "0",
        "--to",
        &head.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// CRASH-01 for `backfill` in bulk-load mode, whose appends go through their own connection
/// (`store/bulk.rs`) while the tx-hash index is dropped: killed up to 6 times at random moments,
/// each restart finds an intact file with no hole and every acknowledged height; the last run
/// finishes, and the result is anvil's chain with the tx-hash index back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_bulk_backfill_loses_nothing() {
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(300, 4).await;
    anvil.mine(2_000).await;
    let head = anvil.head().await;
    let db = temp_db();
    // Bulk mode for this range, and small fetches so that the backfill spans many commits.
    let args = backfill_args(&anvil, &db, head, "");
    let acked = Arc::new(AtomicU64::new(0));
    let mut rng = fastrand::Rng::with_seed(std::env::var("KILL9_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let mut maxes = Vec::new();
    for round in 0..6 {
        let (mut child, reader) = spawn(&args, acked.clone(), Arc::new(AtomicU64::new(0)));
        tokio::time::sleep(Duration::from_millis(rng.u64(150..=1200))).await;
        let finished = matches!(child.try_wait(), Ok(Some(_)));
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        maxes.push(check(&db.path, acked.load(Ordering::SeqCst), round).await);
        if finished {
            break;
        }
    }
    // The last run is left to finish.
    let max = finish(&args, &acked, &db.path, 6, head).await;
    let pool = inspect(&db.path).await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1").await, max + 1);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'transactions_hash'")
            .await,
        1,
        "tx-hash index rebuilt"
    );
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM transactions_view").await, 300 * 4);
    for (n, h) in canonical_hashes(&pool, 0, head).await {
        let truth = anvil.block(n, false).await;
        assert_eq!(Some(h.as_str()), truth["hash"].as_str(), "height {n} differs from anvil");
    }
    pool.close().await;
    eprintln!("kill9 bulk backfill: stored max after each kill: {maxes:?}; final {max}");
    let inside = maxes.iter().filter(|&&m| m >= 0 && m < i64::try_from(head).expect("i64") - 50).count();
    assert!(inside >= 2, "at least two kills landed inside the backfill: {maxes:?}");
}

/// CRASH-01 for a backfill with receipts and logs (bulk mode, small fetches): killed 10 times
/// soon after a commit; after every kill each stored block with transactions has all its receipts
/// (they commit with the block), and at the end every log equals anvil's, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_logs_backfill_loses_and_duplicates_nothing() {
    const BLOCKS: u64 = 3_600;
    let anvil = Anvil::start(&[]).await;
    crate::anvil_logs::with_logging_calls(&anvil, BLOCKS, 2).await;
    let head = anvil.head().await;
    let db = temp_db();
    let args = backfill_args(&anvil, &db, head, "[index]\nreceipts = true\n");
    let acked = Arc::new(AtomicU64::new(0));
    let mut rng = fastrand::Rng::with_seed(std::env::var("KILL9_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(9));
    let mut maxes = Vec::new();
    for round in 0..10 {
        let this_run = Arc::new(AtomicU64::new(0));
        let (mut child, reader) = spawn(&args, acked.clone(), this_run.clone());
        // Killed 0-10 ms after its first commit: start-up is over, most of the range ahead. (A
        // commit here is ~300 blocks; on a fast machine 50 ms let two more land, and the last
        // kills fell after the end of the range.)
        let deadline = Instant::now() + Duration::from_secs(60);
        while this_run.load(Ordering::SeqCst) == 0 && matches!(child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "round {round}: no commit within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..=10))).await;
        let finished = matches!(child.try_wait(), Ok(Some(_)));
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        maxes.push(check(&db.path, acked.load(Ordering::SeqCst), round).await);
        let pool = inspect(&db.path).await;
        let without = scalar_i64(
            &pool,
            "SELECT count(*) FROM blocks WHERE canonical = 1 AND tx_count > 0 AND (receipts <> 1 OR \
             (SELECT count(*) FROM receipts r WHERE r.block_id = blocks.id) <> tx_count)",
        )
        .await;
        assert_eq!(without, 0, "round {round}: a stored block without all its receipts");
        pool.close().await;
        if finished {
            break;
        }
    }
    let max = finish(&args, &acked, &db.path, 10, head).await;
    let pool = inspect(&db.path).await;
    // In pieces: the whole answer is more than the client takes in one message.
    let mut theirs: Vec<(u64, u64)> = Vec::new();
    for lo in (0..=head).step_by(500) {
        let range =
            serde_json::json!({"fromBlock": format!("{lo:#x}"), "toBlock": format!("{:#x}", (lo + 499).min(head))});
        let logs = anvil.call("eth_getLogs", jsonrpsee::rpc_params![range]).await;
        theirs.extend(
            logs.as_array()
                .expect("logs")
                .iter()
                .map(|l| (crate::helpers::hex_u64(&l["blockNumber"]), crate::helpers::hex_u64(&l["logIndex"]))),
        );
    }
    let ours: Vec<(i64, i64)> = sqlx::query_as("SELECT block_number, log_index FROM logs_view ORDER BY 1, 2")
        .fetch_all(&pool)
        .await
        .expect("logs");
    let ours: Vec<(u64, u64)> =
        ours.into_iter().map(|(b, i)| (u64::try_from(b).expect("n"), u64::try_from(i).expect("i"))).collect();
    assert_eq!(theirs.len(), usize::try_from(BLOCKS).expect("n") * 2 * 5, "the node's logs");
    assert_eq!(ours, theirs, "every log once");
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM receipts_view").await,
        i64::try_from(BLOCKS * 2 + 1).expect("n")
    );
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1 AND tx_count > 0 AND receipts <> 1").await,
        0
    );
    pool.close().await;
    eprintln!("kill9 logs backfill: stored max after each kill: {maxes:?}; final {max}");
    let inside = maxes.iter().filter(|&&m| m >= 0 && m < i64::try_from(head).expect("i64") - 20).count();
    assert!(inside >= 8, "at least eight kills landed inside the backfill: {maxes:?}");
}

/// Issue 14: `run --from-block 0` far behind the head catches up through the bulk write path
/// (hash indexes dropped, rebuilt at the end or at the next open). Killed five times soon after
/// a commit inside the catch-up: every restart finds an intact file with no hole and every
/// acknowledged height; the last run catches up, switches to the tip path and follows new
/// blocks with no gap, and the file equals anvil's chain with its indexes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_run_catch_up_loses_nothing() {
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(200, 3).await;
    anvil.mine(3_000).await;
    let head = anvil.head().await;
    // 3 ms per block fetch: the catch-up spans a few seconds, so every kill lands inside it.
    let slow = Script::single(Rule::always("slow", Fault::Delay { ms: 3 }).methods(&["eth_getBlockByNumber"]));
    let proxy = FaultProxy::start(&anvil.url(), "127.0.0.1:0".parse().expect("addr"), slow).await.expect("proxy");
    let db = temp_db();
    let cfg = db.dir.path().join("c.toml");
    std::fs::write(&cfg, "poll_interval_ms = 100\nbatch_size = 1\nconcurrency = 1\ncatch_up_bulk_min_blocks = 50\n")
        .expect("config");
    let args = |run_for: &str| -> Vec<String> {
        let mut a: Vec<String> = ["run", "--listen", "127.0.0.1:0", "--config", &cfg.display().to_string()]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        a.extend(["--rpc".into(), proxy.url(), "--db".into(), db.path.display().to_string()]);
        a.extend(["--from-block".into(), "0".into(), "--run-for".into(), run_for.into()]);
        a
    };
    let acked = Arc::new(AtomicU64::new(0));
    let mut rng = fastrand::Rng::with_seed(std::env::var("KILL9_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(14));
    let mut maxes = Vec::new();
    let clear = || LAST_LINES.lock().map(|mut l| l.clear()).unwrap_or_default();
    for round in 0..5 {
        clear();
        let this_run = Arc::new(AtomicU64::new(0));
        let (mut child, reader) = spawn(&args("600"), acked.clone(), this_run.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        while this_run.load(Ordering::SeqCst) == 0 && matches!(child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "round {round}: no commit within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..=50))).await;
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        assert!(last_lines().contains("catch-up through the bulk write path"), "round {round}:\n{}", last_lines());
        maxes.push(check(&db.path, acked.load(Ordering::SeqCst), round).await);
    }
    let inside = maxes.iter().filter(|&&m| m >= 0 && m < i64::try_from(head).expect("i64") - 50).count();
    assert_eq!(inside, 5, "every kill landed inside the catch-up: {maxes:?} (head {head})");

    // The last run catches up, then follows 5 new blocks on the tip path.
    clear();
    let this_run = Arc::new(AtomicU64::new(0));
    let (mut child, reader) = spawn(&args("60"), acked.clone(), this_run);
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < head + 1 {
        assert!(Instant::now() < deadline, "caught up within 60 s\n{}", last_lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anvil.mine_with_txs(5, 2).await;
    while acked.load(Ordering::SeqCst) < head + 6 {
        assert!(Instant::now() < deadline, "followed the new blocks\n{}", last_lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert!(last_lines().contains("catch-up done: back on the tip path"), "{}", last_lines());
    let max = check(&db.path, acked.load(Ordering::SeqCst), 5).await;
    assert_eq!(max, i64::try_from(head + 5).expect("i64"));
    let pool = inspect(&db.path).await;
    for index in ["transactions_hash", "receipts_tx_hash"] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1")
            .bind(index)
            .fetch_one(&pool)
            .await
            .expect("index");
        assert_eq!(n, 1, "{index} rebuilt");
    }
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM transactions_view").await, 200 * 3 + 5 * 2);
    for (n, h) in canonical_hashes(&pool, 0, head + 5).await {
        if n % 97 == 0 || n > head {
            let truth = anvil.block(n, false).await;
            assert_eq!(Some(h.as_str()), truth["hash"].as_str(), "height {n} differs from anvil");
        }
    }
    pool.close().await;
    eprintln!("kill9 run catch-up: stored max after each kill: {maxes:?}; final {max}");
}
