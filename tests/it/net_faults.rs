//! the fault matrix (docs/testing.md): transport and byte-level faults (NET-01..03).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blockstreamer::config::Strategy;
use blockstreamer::fault::{Fault, FaultProxy, Rule, Script};
use blockstreamer::sim::{self, SimProviderOptions};

use crate::bed::{Bed, Truth, sim_chain};
use crate::helpers::{Anvil, acks, init_tracing, inspect, scalar_i64, temp_db};

/// Breakers that never open, so a faulty provider keeps being asked.
fn never_open_breakers(c: &mut blockstreamer::config::Config) {
    c.routing.breaker_failures = 1_000;
    c.routing.breaker_error_rate = 1.0;
    c.routing.breaker_min_samples = 1_000;
}

/// NET-01 (simulated chain): headers at once, then one body byte every 500 ms. Each request
/// fails at the configured deadline, connections are not leaked, and the others carry the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net01_slow_body_loris() {
    init_tracing();
    // A backlog fetched in many small parallel batches: a third of them go to p1.
    let chain = sim_chain(300, 21);
    let mut bed = Bed::new(Truth::Sim(chain), 3, |c| {
        c.batch_size = 2;
        c.concurrency = 8;
        c.providers[0].timeout_ms = Some(2_000);
        c.routing.strategy = Strategy::RoundRobin;
        // hedging would rescue every slow fetch before the deadline; this test is about the deadline
        c.routing.hedge = false;
        // keep p1 in play so the deadline is exercised many times
        never_open_breakers(c);
    })
    .await;
    // Block fetches only: head polls (the `latest` tag has no height) stay fast, so p1 keeps
    // a head and keeps being asked for blocks.
    bed.proxies[0].set_script(Script::single(
        Rule::always("loris", Fault::SlowBody { chunk: 1, interval_ms: 500 }).heights(0, u64::MAX),
    ));
    bed.follow(0);
    bed.run_chain(Duration::from_millis(250), Duration::from_secs(8)).await;
    // Without hedging every fetch that lands on p1 — blocks and their receipts — waits out its
    // 2 s deadline first.
    bed.settle(Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT outcome, latency_ms FROM provider_requests_view WHERE provider = 'p1' AND block_number IS NOT NULL AND outcome <> 'cancelled'",
    )
    .fetch_all(&bed.pool)
    .await
    .expect("rows");
    assert!(rows.len() >= 30, "p1 was asked only {} times", rows.len());
    for (outcome, ms) in &rows {
        assert_eq!(outcome, "timeout", "slow body classified {outcome}");
        assert!(*ms <= 2_500.0, "a slow body took {ms} ms to fail (deadline 2 s)");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (accepted, open) = bed.proxies[0].connections();
    assert!(open <= 2, "{open} of {accepted} connections to p1 still open");
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}

/// Resident KiB of process `pid`. Panics when /proc cannot be read or has no figure: a check
/// that read 0 would pass whatever the memory did.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    assert!(kib > 0, "VmRSS of {pid} is 0");
    kib
}

/// NET-02 (the real binary as a child, simulated chain): a 40 MiB answer and an endless chunked
/// answer are cut at the 16 MiB cap, classified `too_large`, and the process does not balloon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net02_oversized_response_cap() {
    init_tracing();
    let chain = sim_chain(30, 22);
    let s1 = sim::serve(chain.clone(), SimProviderOptions { name: "s1".into(), lag: 0 }).await.expect("serve");
    let s2 = sim::serve(chain.clone(), SimProviderOptions { name: "s2".into(), lag: 0 }).await.expect("serve");
    let addr = "127.0.0.1:0".parse().expect("addr");
    let p1 = FaultProxy::start(&s1.url(), addr, Script::default()).await.expect("proxy");
    let p2 = FaultProxy::start(&s2.url(), addr, Script::default()).await.expect("proxy");
    let db = temp_db();
    let cfg = db.dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "poll_interval_ms = 100\n[routing]\nstrategy = \"priority\"\nhedge = false\n[[providers]]\nname = \"p1\"\nurl = \"{}\"\n[[providers]]\nname = \"p2\"\nurl = \"{}\"\n",
            p1.url(),
            p2.url()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--db")
        .arg(&db.path)
        .args(["--from-block", "0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let rx = acks(out);
    let wait_tip = |want: u64, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok_and(|n| n >= want) {
                return true;
            }
        }
        false
    };
    assert!(wait_tip(30, 20), "child never caught up");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id();
    let before = vm_rss_kib(pid);
    p1.set_script(Script {
        seed: 2,
        rules: vec![
            Rule::always("huge", Fault::Oversize { bytes: 40 << 20 })
                .methods(&["eth_getBlockByNumber"])
                .heights(31, 33),
            Rule::always("endless", Fault::Endless).methods(&["eth_getBlockByNumber"]).heights(34, 36),
        ],
    });
    // p2 draws each fault once too, so the retry after p1's failure meets the cap as well:
    // at least two oversized answers whichever provider the fleet prefers next.
    p2.set_script(Script {
        seed: 3,
        rules: vec![
            Rule::always("huge", Fault::Oversize { bytes: 40 << 20 })
                .methods(&["eth_getBlockByNumber"])
                .heights(31, 33)
                .count(1),
            Rule::always("endless", Fault::Endless).methods(&["eth_getBlockByNumber"]).heights(34, 36).count(1),
        ],
    });
    let started = Instant::now();
    for _ in 0..8 {
        chain.tick();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(wait_tip(38, 30), "child did not store past the oversized answers");
    let elapsed = started.elapsed();
    let after = vm_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert!(after <= before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let pool = inspect(&db.path).await;
    let too_large = scalar_i64(&pool, "SELECT count(*) FROM provider_requests_view WHERE outcome = 'too_large'").await;
    let drew = p1.log().iter().chain(p2.log().iter()).filter(|c| c.fault.is_some()).count();
    assert!(drew >= 2, "faults drawn {drew}");
    let classes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT provider || ' ' || outcome || ' ' || coalesce(error, ''), count(*) FROM provider_requests_view GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("classes");
    assert_eq!(
        usize::try_from(too_large).expect("usize"),
        drew,
        "every oversized answer classified too_large: {classes:?}"
    );
    let (_, missing, dups, breaks, partial): (i64, i64, i64, i64, i64) =
        sqlx::query_as(include_str!("../../sql/checks/chain_invariants.sql")).fetch_one(&pool).await.expect("inv");
    assert_eq!((missing, dups, breaks, partial), (0, 0, 0, 0));
}

/// NET-03 (anvil behind proxies): 30 % of p1's answers are reset mid-body, cut after half the
/// JSON, an HTML page, empty, or followed by garbage. Nothing bad is stored and the telemetry
/// counts equal the injected counts exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net03_reset_truncate_html_garbage() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(10, 3).await;
    let mut bed = Bed::new(Truth::Anvil(anvil), 3, |c| {
        c.routing.strategy = Strategy::RoundRobin;
        // a hedge loser is cancelled after the proxy counted it: keep the counts exact
        c.routing.hedge = false;
        never_open_breakers(c);
    })
    .await;
    let p = 0.06;
    bed.proxies[0].set_script(Script {
        seed: 3,
        rules: vec![
            Rule::always("rst", Fault::Reset { after_bytes: 120 }).probability(p),
            Rule::always("half", Fault::Truncate { fraction: 0.5 }).probability(p),
            Rule::always("html", Fault::Html).probability(p),
            Rule::always("empty", Fault::Empty).probability(p),
            Rule::always("trailing", Fault::TrailingGarbage).probability(p),
        ],
    });
    bed.follow(0);
    let started = Instant::now();
    while bed.truth.head().await < 300 {
        bed.truth.advance().await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    bed.settle(Duration::from_secs(15)).await;
    let took = started.elapsed();
    // Faults off before stopping: a call cut short by the shutdown is `cancelled` on our side
    // but would still be counted by the proxy if it had drawn a fault.
    bed.proxies[0].set_script(Script::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    let log = bed.log(0);
    let injected = log.iter().filter(|c| c.fault.is_some()).count();
    assert!(injected >= 30, "only {injected} faults injected in {took:?}");
    let failed = scalar_i64(
        &bed.pool,
        "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND outcome NOT IN ('ok', 'cancelled')",
    )
    .await;
    let by_class: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, count(*) FROM provider_requests_view WHERE provider = 'p1' GROUP BY outcome")
            .fetch_all(&bed.pool)
            .await
            .expect("classes");
    assert_eq!(
        usize::try_from(failed).expect("usize"),
        injected,
        "telemetry failures of p1 {by_class:?} vs {injected} injected"
    );
    bed.assert_final().await;
}
