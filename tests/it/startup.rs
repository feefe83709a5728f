//! Start-up with a slightly wrong fleet, through the binary: a split on the chain id refuses to
//! start, a strict majority is followed, and a fleet of unreachable providers fails within
//! `startup_timeout_ms`, naming each provider's last error.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{Anvil, free_port, inspect, scalar_i64};

fn backfill(db: &std::path::Path, extra: &[&str]) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["backfill", "--from", "0", "--to", "3", "--db"])
        .arg(db)
        .args(extra)
        .output()
        .expect("run binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_fleet_refuses_and_a_majority_is_followed() {
    let main = Anvil::start(&[]).await;
    let other = Anvil::start(&["--chain-id", "5"]).await;
    main.mine(5).await;
    other.mine(5).await;
    let (a, b) = (main.url(), other.url());
    let dir = tempfile::tempdir().expect("tempdir");

    // 1:1, in both orders: refused, each provider named with its chain, nothing stored.
    for (k, order) in [[&a, &b], [&b, &a]].into_iter().enumerate() {
        let db = dir.path().join(format!("split{k}.db"));
        let (code, text, _) = backfill(&db, &["--rpc", order[0], "--rpc", order[1]]);
        assert_ne!(code, 0, "a 1:1 split must not start: {text}");
        let name = |u: &str| u.trim_start_matches("http://").to_string();
        assert!(text.contains(&format!("{} serves chain 31337", name(&a))), "{text}");
        assert!(text.contains(&format!("{} serves chain 5", name(&b))), "{text}");
        assert!(text.contains("chain_id"), "says what to set: {text}");
        if db.exists() {
            let pool = inspect(&db).await;
            assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM blocks").await, 0, "nothing stored");
            pool.close().await;
        }
    }

    // 2:1: the majority is followed and the odd one is excluded with a provider event.
    let db = dir.path().join("majority.db");
    let (code, text, _) = backfill(&db, &["--rpc", &b, "--rpc", &a, "--rpc", &a]);
    assert_eq!(code, 0, "{text}");
    let pool = inspect(&db).await;
    assert_eq!(scalar_i64(&pool, "SELECT value FROM meta WHERE key = 'chain_id'").await, 31337);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM canonical_blocks WHERE number <= 3").await, 4);
    let excluded = scalar_i64(
        &pool,
        "SELECT count(*) FROM provider_events_view WHERE kind = 'wrong_chain' AND reason LIKE 'eth_chainId says 5%'",
    )
    .await;
    assert_eq!(excluded, 1, "the provider on chain 5 is excluded loudly");
    pool.close().await;

    // The file now holds chain 31337: a fleet split 1:1 is judged against it, not refused.
    let (code, text, _) = backfill(&db, &["--rpc", &b, "--rpc", &a]);
    assert_eq!(code, 0, "the stored chain decides: {text}");
    // A fleet that only serves chain 5 is refused for this file.
    let (code, text, _) = backfill(&db, &["--rpc", &b]);
    assert_ne!(code, 0);
    assert!(text.contains("holds chain 31337"), "{text}");
}

#[test]
fn only_unreachable_providers_fail_within_the_startup_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    let (p1, p2) = (free_port(), free_port());
    std::fs::write(
        &cfg,
        format!(
            "startup_timeout_ms = 1500\n[[providers]]\nname = \"gone\"\nurl = \"http://127.0.0.1:{p1}\"\n\
             [[providers]]\nname = \"also-gone\"\nurl = \"http://127.0.0.1:{p2}/v2/key\"\n"
        ),
    )
    .expect("write");
    let cfg = cfg.to_str().expect("utf8");
    let db = dir.path().join("x.db");
    let (code, text, took) = backfill(&db, &["--config", cfg]);
    assert_ne!(code, 0, "{text}");
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    assert!(text.contains("no provider answered eth_chainId within"), "{text}");
    for name in ["gone:", "also-gone:"] {
        let line = text.lines().find(|l| l.contains("within")).unwrap_or_default();
        assert!(line.contains(name), "names {name}: {line}");
    }
    assert!(text.to_ascii_lowercase().contains("connect"), "says why (connection refused): {text}");

    // `run` gives up the same way at start-up.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["run", "--listen", "127.0.0.1:0", "--config", cfg, "--db"])
        .arg(dir.path().join("y.db"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text.contains("no provider answered eth_chainId within"), "{text}");
}
