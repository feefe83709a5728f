//! Logs through reorgs against anvil (`anvil_reorg` at depths 1, 3 and 12 while following):
//! the logs and decoded events of dropped blocks leave `logs_view` and the decoded views, and a
//! `/v1/stream/logs` client sees each dropped log again with `removed: true`, then the new
//! logs, with no gap and no duplicate — connected through the reorg, and resuming with
//! `Last-Event-ID` after one that happened while it was away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{B256, U256, hex, keccak256};
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

use blockstreamer::app::{App, AppOptions};

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, hex_u64, init_tracing, inspect, integrity_ok, spawn_follow, temp_db};
use crate::http::{Sse, SseEvent, client};

/// (block number, block hash, log index).
type Key = (u64, String, u64);

/// What a log-stream client holds, kept by applying events; panics on a duplicate, or a
/// removal of a log it does not hold.
#[derive(Default)]
struct Model {
    logs: BTreeSet<Key>,
    removed: usize,
    last_id: Option<String>,
}

impl Model {
    fn apply(&mut self, ev: &SseEvent) {
        assert_eq!(ev.event, "log", "{}", ev.data);
        let v: Value = serde_json::from_str(&ev.data).expect("JSON");
        let key = (
            v["block_number"].as_u64().expect("number"),
            v["block_hash"].as_str().expect("hash").to_string(),
            v["log_index"].as_u64().expect("index"),
        );
        if v["removed"] == true {
            assert!(self.logs.remove(&key), "removed a log never sent: {key:?}");
            self.removed += 1;
        } else {
            assert!(self.logs.insert(key.clone()), "duplicate log {key:?}");
            assert_eq!(ev.id.as_deref(), Some(format!("{}:{}:{}", key.0, key.1, key.2).as_str()));
        }
        self.last_id = ev.id.clone();
    }
}

/// The node's logs of `emitter` now.
async fn node_logs(anvil: &Anvil, emitter: &str) -> BTreeSet<Key> {
    let head = anvil.head().await;
    let logs = anvil
        .call(
            "eth_getLogs",
            rpc_params![json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter})],
        )
        .await;
    logs.as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (
                hex_u64(&l["blockNumber"]),
                l["blockHash"].as_str().expect("hash").to_ascii_lowercase(),
                hex_u64(&l["logIndex"]),
            )
        })
        .collect()
}

async fn ours(pool: &sqlx::SqlitePool, view: &str) -> BTreeSet<Key> {
    let rows: Vec<(i64, String, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT block_number, block_hash, log_index FROM {view}")))
            .fetch_all(pool)
            .await
            .expect(view);
    rows.into_iter().map(|(n, h, i)| (u64::try_from(n).expect("n"), h, u64::try_from(i).expect("i"))).collect()
}

/// Read events until the client holds exactly `want`.
async fn read_until(s: &mut Sse, m: &mut Model, want: &BTreeSet<Key>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.logs != *want {
        assert!(Instant::now() < deadline, "stream never converged: holds {} of {}", m.logs.len(), want.len());
        if let Some(ev) = s.next(Duration::from_secs(2)).await {
            m.apply(&ev);
        }
    }
}

/// Transfer calldata for the emitter: (topics, data) as its calldata.
pub fn transfer_call(k: u64) -> String {
    let mut calldata = Vec::new();
    calldata.extend_from_slice(keccak256("Transfer(address,address,uint256)").as_slice());
    calldata.extend_from_slice(B256::with_last_byte(0x11).as_slice());
    calldata.extend_from_slice(B256::with_last_byte(u8::try_from(k % 250).unwrap_or(0)).as_slice());
    calldata.extend_from_slice(&U256::from(1_000 + k).to_be_bytes::<32>());
    hex::encode_prefixed(calldata)
}

/// Replace the newest `depth` blocks with blocks that each hold two emitter transfers.
pub async fn reorg_with_logs(anvil: &Anvil, emitter: &str, depth: u64, salt: u64) {
    let accts = anvil.accounts().await;
    let mut txs = Vec::new();
    for b in 0..depth {
        for i in 0..2 {
            let tx = json!({"from": accts[usize::try_from(i).unwrap_or(0) + 1], "to": emitter, "data": transfer_call(salt * 100 + b * 2 + i), "gas": "0x40000"});
            txs.push((tx, b));
        }
    }
    anvil.call("anvil_reorg", rpc_params![depth, txs]).await;
}

pub async fn wait_stored(pool: &sqlx::SqlitePool, anvil: &Anvil, emitter: &str) -> BTreeSet<Key> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = node_logs(anvil, emitter).await;
        if ours(pool, "logs_view").await == want {
            return want;
        }
        assert!(Instant::now() < deadline, "stored logs never matched the node's");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_take_logs_and_events_away_and_the_stream_says_removed() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    let (emitter, _) = crate::decoded::emit_chain(&anvil, 20).await;
    let db = temp_db();
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url], &["a", "b"]);
    config.poll_interval_ms = 100;
    config.alerts.enabled = false;
    config.index.contracts = vec![crate::decoded::contract(&emitter)];
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let api = app.start_api(Some("127.0.0.1:0".parse().expect("addr")), &cancel).await.expect("api").expect("enabled");
    let base = format!("http://{}", api.addr());
    let follow = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    let c = client();
    let stream_url = format!("{base}/v1/stream/logs?address={emitter}&from=0");
    let mut s = Sse::open(&c, &stream_url, None).await;
    assert_eq!(s.status, 200);
    let mut m = Model::default();
    let want = wait_stored(&pool, &anvil, &emitter).await;
    read_until(&mut s, &mut m, &want).await;

    for (k, depth) in [1u64, 3, 12].into_iter().enumerate() {
        let before = node_logs(&anvil, &emitter).await;
        let salt = u64::try_from(k).unwrap_or(0) + 1;
        if depth == 12 {
            // Away during this one: resume with Last-Event-ID afterwards.
            drop(s);
            reorg_with_logs(&anvil, &emitter, depth, salt).await;
            anvil.mine(2).await;
            let want = wait_stored(&pool, &anvil, &emitter).await;
            s = Sse::open(&c, &stream_url, m.last_id.as_deref()).await;
            let removed_before = m.removed;
            read_until(&mut s, &mut m, &want).await;
            let dropped = before.difference(&want).count();
            assert_eq!(m.removed - removed_before, dropped, "depth {depth}: every dropped log removed once");
        } else {
            reorg_with_logs(&anvil, &emitter, depth, salt).await;
            anvil.mine(1).await;
            let want = wait_stored(&pool, &anvil, &emitter).await;
            let removed_before = m.removed;
            read_until(&mut s, &mut m, &want).await;
            let dropped = before.difference(&want).count();
            assert!(dropped > 0, "depth {depth} dropped logs");
            assert_eq!(m.removed - removed_before, dropped, "depth {depth}: every dropped log removed once");
        }
        // The decoded view follows the raw logs: the node's transfers, nothing of dropped blocks.
        let transfers = ours(&pool, "evt_tok_transfer_view").await;
        let node_transfers: BTreeSet<Key> = {
            let head = anvil.head().await;
            let topic = keccak256("Transfer(address,address,uint256)").to_string();
            let logs = anvil
                .call("eth_getLogs", rpc_params![json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter, "topics": [topic]})])
                .await;
            logs.as_array()
                .expect("logs")
                .iter()
                .filter(|l| l["data"].as_str().is_some_and(|d| d.len() == 66))
                .map(|l| {
                    (
                        hex_u64(&l["blockNumber"]),
                        l["blockHash"].as_str().unwrap_or_default().to_ascii_lowercase(),
                        hex_u64(&l["logIndex"]),
                    )
                })
                .collect()
        };
        assert_eq!(transfers, node_transfers, "depth {depth}: decoded view equals the node's transfers");
    }
    cancel.cancel();
    let _ = follow.await;
    integrity_ok(&pool).await;
    pool.close().await;
    drop(api);
    match Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => panic!("app still shared"),
    }
}
