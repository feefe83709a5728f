//! The NATS sink under faults, against a real nats-server and anvil: kill -9 of blockstreamer
//! while it publishes (10 times), the broker stopped for 20 s while ingest runs, the broker
//! restarted with its data wiped, and `publish = "final"`. Each time every message is counted
//! at a consumer: each (kind, height, hash) exactly once, in canonical order.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::{NatsSinkConfig, PublishWhen};

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, inspect, spawn_follow, temp_db};
use crate::sink_nats::{Applied, NatsServer, converge, drain, node_chain, read_stream};

/// (height, messages, stream sequence) of the sink's row, if any.
async fn position(pool: &sqlx::SqlitePool) -> Option<(i64, i64, i64)> {
    sqlx::query_as("SELECT coalesce(number, -1), messages, stream_seq FROM sink_positions WHERE sink = 'nats'")
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

fn spawn_run(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn blockstreamer")
}

/// Every block message came once, in height order, and the chain is the node's.
fn assert_in_order(applied: &Applied, head: u64) {
    let want: Vec<u64> = (0..=head).collect();
    assert_eq!(applied.block_order, want, "each block once, in canonical order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_publishing_delivers_each_message_once() {
    let nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    crate::decoded::emit_chain(&anvil, 10).await;
    anvil.mine_with_txs(150, 6).await;
    let db = temp_db();
    let cfg = db.dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "poll_interval_ms = 100\n[alerts]\nenabled = false\n[sink.nats]\nurl = \"{}\"\nstream = \"k9\"\nmax_in_flight = 32\n",
            nats.url()
        ),
    )
    .expect("config");
    let args: Vec<String> = [
        "run",
        "--listen",
        "127.0.0.1:0",
        "--config",
        &cfg.display().to_string(),
        "--rpc",
        &anvil.url(),
        "--db",
        &db.path.display().to_string(),
        "--from-block",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let mut rng = fastrand::Rng::with_seed(5);
    let mut ahead = 0;
    let mut reorgs = 0;
    for round in 0..10 {
        // More chain to publish each round: catch-up and publishing overlap.
        anvil.mine_with_txs(40, 6).await;
        let before = if db.path.exists() {
            let pool = inspect(&db.path).await;
            let p = position(&pool).await;
            pool.close().await;
            p.map_or(0, |p| p.1)
        } else {
            0
        };
        let head_now = i64::try_from(anvil.head().await).unwrap_or(i64::MAX);
        let reorg_round = round % 4 == 3;
        let mut child = spawn_run(&args);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Wait for the first acknowledged batch of this run (by then the file exists); on even
        // rounds then for a batch in flight (marked before its publish), to kill inside it.
        let mut pool = None;
        let mut acked_once = false;
        let mut first_ack = Instant::now();
        loop {
            if pool.is_none() && db.path.exists() {
                pool = Some(inspect(&db.path).await);
            }
            if let Some(pool) = &pool {
                let p = position(pool).await;
                if !acked_once && p.is_some_and(|p| p.1 > before) {
                    acked_once = true;
                    first_ack = Instant::now();
                }
                // Before a reorg: everything published, so the reorg drops published blocks.
                if reorg_round && p.is_some_and(|p| p.0 >= head_now) {
                    break;
                }
                let in_flight: Option<i64> =
                    sqlx::query_scalar("SELECT pending_number FROM sink_positions WHERE sink = 'nats'")
                        .fetch_optional(pool)
                        .await
                        .ok()
                        .flatten()
                        .flatten();
                // (No batch seen in flight within 500 ms: the backlog went in one; kill anyway.)
                let waited = first_ack.elapsed() > Duration::from_millis(500);
                if !reorg_round && acked_once && (round % 2 == 1 || in_flight.is_some() || waited) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "round {round}: the sink published nothing within 60 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(p) = pool {
            p.close().await;
        }
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..=15))).await;
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let pool = inspect(&db.path).await;
        let acked = position(&pool).await.map_or(0, |p| p.2);
        pool.close().await;
        let last = js.get_stream("k9").await.expect("stream").get_info().await.expect("info").state.last_sequence;
        if last > u64::try_from(acked).unwrap_or(0) {
            ahead += 1;
        }
        // Twice, the chain reorganises while blockstreamer is down: what the broker got
        // beyond the stored position is undone too.
        if reorg_round {
            anvil.reorg(3).await;
            anvil.mine(1).await;
            reorgs += 1;
        }
    }
    // A last run publishes up to the head and is stopped with Ctrl-C semantics (SIGKILL is fine:
    // the position is durable).
    let head = anvil.head().await;
    let mut child = spawn_run(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pool = inspect(&db.path).await;
        let p = position(&pool).await;
        pool.close().await;
        if p.is_some_and(|p| p.0 == i64::try_from(head).unwrap_or(-1)) {
            break;
        }
        assert!(Instant::now() < deadline, "the sink reached {head} within 60 s ({p:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut msgs = read_stream(&nats.url(), "k9").await;
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    drain(&mut msgs, &mut applied, Duration::from_millis(500)).await;
    // Every transaction of the node's chain once (each id once is checked as they arrive).
    let mut txs = 0;
    for n in 0..=head {
        let c = anvil.call("eth_getBlockTransactionCountByNumber", jsonrpsee::rpc_params![format!("{n:#x}")]).await;
        txs += crate::helpers::hex_u64(&c);
    }
    assert_eq!(u64::try_from(applied.held_txs()).ok(), Some(txs), "each transaction of the chain once");
    assert!(applied.reorgs >= 1 && reorgs == 2, "undo messages after the reorgs while down");
    assert!(ahead >= 1, "only {ahead} of 10 kills landed while the broker held more than the stored position");
    eprintln!(
        "kill -9 x10: {ahead} kills left the broker ahead of the stored position; {} messages once each",
        applied.ids.len()
    );
}

/// `GET /v1/sinks`' first sink.
async fn sink_status(api: &str) -> Value {
    let v = crate::http::get(&crate::http::client(), &format!("{api}/v1/sinks")).await.json();
    v["sinks"][0].clone()
}

/// An App following `anvil` with the sink on `nats`; `tweak` edits the config.
async fn start_app(
    anvil: &Anvil,
    nats: &NatsServer,
    db: &crate::helpers::TempDb,
    tweak: impl FnOnce(&mut blockstreamer::config::Config),
) -> (
    Arc<App>,
    blockstreamer::api::ApiServer,
    tokio::task::JoinHandle<Result<(), blockstreamer::app::AppError>>,
    CancellationToken,
) {
    let mut config = config_for(&[anvil.url()], &["a"]);
    config.poll_interval_ms = 100;
    config.alerts.enabled = false;
    config.sink.nats = Some(NatsSinkConfig { url: nats.url(), stream: "s".into(), ..NatsSinkConfig::default() });
    tweak(&mut config);
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = CancellationToken::new();
    let api = app.start_api(Some("127.0.0.1:0".parse().expect("addr")), &cancel).await.expect("api").expect("enabled");
    let follow = spawn_follow(&app, &cancel);
    (app, api, follow, cancel)
}

/// A block every 200 ms (with one transfer) until cancelled.
fn keep_mining(anvil: &Anvil, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
    let client = anvil.client.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        use jsonrpsee::core::client::ClientT;
        while !stop.is_cancelled() {
            let _ = client.request::<Value, _>("anvil_mine", jsonrpsee::rpc_params!["0x1"]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_grows_the_backlog_then_drains_it() {
    let mut nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(20, 3).await;
    let db = temp_db();
    let (_app, api, follow, cancel) = start_app(&anvil, &nats, &db, |c| {
        c.alerts.enabled = true;
        c.alerts.interval_ms = 300;
        c.alerts.sink_backlog_blocks = 10;
    })
    .await;
    let base = format!("http://{}", api.addr());
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    drop(msgs);
    let stop = CancellationToken::new();
    let miner = keep_mining(&anvil, &stop);
    // The broker goes away for 20 s: ingest goes on, the backlog grows, an alert opens.
    nats.stop();
    let stored_before = anvil.head().await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = sink_status(&base).await;
    let backlog = during["backlog_blocks"].as_u64().unwrap_or(0);
    assert!(backlog >= 30, "the backlog grew while the broker was down: {during}");
    assert!(during["last_error"].is_string(), "the failure is shown: {during}");
    let pool = inspect(&db.path).await;
    let stored = crate::helpers::scalar_i64(&pool, "SELECT max(number) FROM canonical_blocks").await;
    pool.close().await;
    assert!(u64::try_from(stored).unwrap_or(0) >= stored_before + 30, "ingest went on ({stored})");
    let alerts = crate::http::get(&crate::http::client(), &format!("{base}/v1/alerts")).await.json();
    assert!(alerts.to_string().contains("sink_backlog"), "a sink_backlog alert opened: {alerts}");
    // Back: the backlog drains; nothing lost, nothing twice.
    nats.restart().await;
    stop.cancel();
    let _ = miner.await;
    // The whole stream, read again from its first message.
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    drain(&mut msgs, &mut applied, Duration::from_millis(500)).await;
    assert_in_order(&applied, anvil.head().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = sink_status(&base).await;
        if s["backlog_blocks"].as_u64() == Some(0) && s["last_error"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog drained: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_broker_stops_the_sink_until_it_is_reset() {
    let mut nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(10, 2).await;
    let db = temp_db();
    let (_app, api, follow, cancel) = start_app(&anvil, &nats, &db, |_| {}).await;
    let base = format!("http://{}", api.addr());
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    drop(msgs);
    // The server comes back empty: the sink must not recreate the stream and carry on.
    nats.wipe();
    nats.restart().await;
    anvil.mine(3).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let err = loop {
        let s = sink_status(&base).await;
        if let Some(e) = s["last_error"].as_str().filter(|e| e.contains("sink-reset")) {
            break e.to_string();
        }
        assert!(Instant::now() < deadline, "the sink reported the lost stream: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(err.contains("no longer holds what it acknowledged") && err.contains("--from-block"), "{err}");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    assert!(js.get_stream("s").await.is_err(), "the stream was not silently recreated");
    // The operator replays from height 5 (the running sink picks the reset up).
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["sink-reset", "nats", "--from-block", "5", "--db"])
        .arg(&db.path)
        .output()
        .expect("sink-reset");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut replay = Applied::default();
    converge_from(&mut msgs, &mut replay, &anvil, 5).await;
    assert_eq!(replay.block_order.first(), Some(&5), "the replay starts at the height asked");
    assert_eq!(replay.block_order, (5..=anvil.head().await).collect::<Vec<_>>());
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}

/// Read until the consumer holds the node's chain from `from` up.
async fn converge_from(
    msgs: &mut async_nats::jetstream::consumer::pull::Stream,
    applied: &mut Applied,
    anvil: &Anvil,
    from: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let want: std::collections::BTreeMap<u64, String> = node_chain(anvil).await.split_off(&from);
        if applied.blocks == want {
            return;
        }
        assert!(Instant::now() < deadline, "consumer holds {} blocks, want {}", applied.blocks.len(), want.len());
        drain(msgs, applied, Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_final_waits_for_confirmations_and_never_undoes() {
    let nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(10, 2).await;
    let db = temp_db();
    let (_app, api, follow, cancel) = start_app(&anvil, &nats, &db, |c| {
        if let Some(n) = c.sink.nats.as_mut() {
            n.publish = PublishWhen::Final;
            n.confirmations = 4;
        }
    })
    .await;
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut applied = Applied::default();
    // Reorgs shallower than the confirmations change nothing that was published.
    for depth in [1u64, 3, 2] {
        anvil.reorg(depth).await;
        anvil.mine(1).await;
    }
    let head = anvil.head().await;
    let mut want = node_chain(&anvil).await;
    want.retain(|n, _| *n + 4 <= head);
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied.blocks != want {
        assert!(Instant::now() < deadline, "held {} final blocks, want {}", applied.blocks.len(), want.len());
        drain(&mut msgs, &mut applied, Duration::from_millis(300)).await;
    }
    // Nothing past the final height, no reorg message.
    drain(&mut msgs, &mut applied, Duration::from_millis(800)).await;
    assert_eq!(applied.blocks, want, "only blocks 4 deep");
    assert_eq!(applied.reorgs, 0, "publish = final never sends an undo");
    assert_in_order(&applied, head - 4);
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}

/// Mine one empty block at `ts` with a pinned base fee: after `evm_revert`, the same call mines
/// the same block (same hash) again.
async fn mine_at(anvil: &Anvil, ts: u64) {
    anvil.call("anvil_setNextBlockBaseFeePerGas", jsonrpsee::rpc_params!["0x3b9aca00"]).await;
    anvil.call("evm_mine", jsonrpsee::rpc_params![ts]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_comes_back_after_its_undo_is_published_again() {
    let nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    anvil.mine(5).await;
    let db = temp_db();
    let (_app, api, follow, cancel) = start_app(&anvil, &nats, &db, |_| {}).await;
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut applied = Applied::default();
    let t = 2_000_000_000u64;
    // A: block 6 at t.
    let s0 = anvil.call("evm_snapshot", jsonrpsee::rpc_params![]).await;
    mine_at(&anvil, t).await;
    converge(&mut msgs, &mut applied, &anvil).await;
    let a6 = applied.blocks[&6].clone();
    // B: a longer branch replaces it.
    anvil.call("evm_revert", jsonrpsee::rpc_params![s0]).await;
    let s1 = anvil.call("evm_snapshot", jsonrpsee::rpc_params![]).await;
    mine_at(&anvil, t + 100).await;
    mine_at(&anvil, t + 101).await;
    converge(&mut msgs, &mut applied, &anvil).await;
    assert_eq!(applied.reorgs, 1);
    // A again, the very same block 6, inside the broker's duplicate window, then longer.
    anvil.call("evm_revert", jsonrpsee::rpc_params![s1]).await;
    for k in 0..3 {
        mine_at(&anvil, t + k).await;
    }
    assert_eq!(anvil.block(6, false).await["hash"].as_str(), Some(a6.as_str()), "anvil mined A's block 6 again");
    converge(&mut msgs, &mut applied, &anvil).await;
    assert_eq!(applied.reorgs, 2);
    assert!(applied.ids.contains(&format!("31337:block:6:{a6}:redo1")), "block 6 told again under a new id");
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}

/// A crash between the broker's acknowledgement of a batch and the stored position, then a
/// reorg of exactly the blocks of that batch while blockstreamer is down. The crash window is
/// microseconds wide, so the test writes the state it leaves (the position three blocks back,
/// the batch's last block marked in flight) instead of aiming a kill at it. The reorg (depth 2)
/// is shallower than the batch: without the mark the sink would resume from a block that is
/// still canonical and publish replacements on top of blocks the consumer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_of_the_batch_in_flight_at_a_crash_is_undone() {
    let nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(12, 2).await;
    let db = temp_db();
    let (app, api, follow, cancel) = start_app(&anvil, &nats, &db, |_| {}).await;
    let mut msgs = read_stream(&nats.url(), "s").await;
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    let head = anvil.head().await;
    let pool = inspect(&db.path).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while position(&pool).await.is_none_or(|p| p.0 != i64::try_from(head).unwrap_or(-1)) {
        assert!(Instant::now() < deadline, "the sink acknowledged the head {head}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
    // Its sink stops with the app (as `run` stops when its process ends).
    let Ok(app) = Arc::try_unwrap(app) else { panic!("the test holds the only App") };
    app.shutdown().await;

    // The state such a crash leaves: acknowledged up to head - 3, head - 2..=head in flight
    // (the broker holds them; the consumer above applied them).
    let hash_at = |n: u64| {
        let anvil = &anvil;
        async move {
            let h = anvil.block(n, false).await["hash"].as_str().expect("hash").to_string();
            h.parse::<alloy_primitives::B256>().expect("hash").to_vec()
        }
    };
    let (back, tip) = (hash_at(head - 3).await, hash_at(head).await);
    sqlx::query(
        "UPDATE sink_positions SET number = ?1, hash = ?2, pending_number = ?3, pending_hash = ?4 WHERE sink = 'nats'",
    )
    .bind(i64::try_from(head - 3).expect("height"))
    .bind(back)
    .bind(i64::try_from(head).expect("height"))
    .bind(tip)
    .execute(&pool)
    .await
    .expect("crash state");
    pool.close().await;
    let held_before = applied.blocks.clone();
    anvil.reorg(2).await;
    anvil.mine(1).await;

    let (_app, api, follow, cancel) = start_app(&anvil, &nats, &db, |_| {}).await;
    converge(&mut msgs, &mut applied, &anvil).await;
    drain(&mut msgs, &mut applied, Duration::from_millis(500)).await;
    assert_eq!(applied.reorgs, 1, "one undo, covering the blocks that were in flight");
    let replaced: Vec<u64> =
        held_before.iter().filter(|(n, h)| applied.blocks.get(n) != Some(*h)).map(|(n, _)| *n).collect();
    assert_eq!(replaced, vec![head - 1, head], "the reorg replaced the batch's last two blocks");
    assert_eq!(applied.blocks, node_chain(&anvil).await);
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}
