//! anvil → blockstreamer → nats-server (JetStream) → a consumer: the consumer's chain, applied
//! from the messages alone, equals anvil's, through `anvil_reorg` at depths 1, 3 and 12; each
//! `reorg` message comes before its replacement blocks; every message carries its
//! `Nats-Msg-Id`; a stream wiped under the sink stops it with a reason instead of a silent skip.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::NatsSinkConfig;

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, free_port, hex_u64, init_tracing, spawn_follow, temp_db};
use crate::logs_reorg::reorg_with_logs;

/// A nats-server with JetStream on a free loopback port, killed (by PID) on drop.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub async fn start() -> Self {
        let bin = crate::helpers::find_tool("NATS_SERVER", &["nats-server"], ".ci/run installs Debian's nats-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a consumer holds after applying the messages in order.
#[derive(Default)]
struct Applied {
    blocks: BTreeMap<u64, String>,
    logs: BTreeSet<(u64, String, u64)>,
    reorgs: usize,
    ids: BTreeSet<String>,
}

impl Applied {
    fn apply(&mut self, id: &str, v: &Value) {
        assert!(self.ids.insert(id.to_string()), "message {id} delivered twice");
        match v["type"].as_str() {
            Some("block") => {
                let n = v["number"].as_u64().expect("number");
                let h = v["hash"].as_str().expect("hash").to_string();
                assert_eq!(id, format!("31337:block:{n}:{h}"));
                assert_eq!(v["block"]["hash"].as_str(), Some(h.as_str()), "the node's block JSON");
                if let Some(old) = self.blocks.get(&n) {
                    panic!("block {n} {h} arrived while {old} was not undone: the reorg message must come first");
                }
                if n > 0 {
                    assert_eq!(self.blocks.get(&(n - 1)).map(String::as_str), v["parent_hash"].as_str(), "links");
                }
                self.blocks.insert(n, h);
            }
            Some("log") => {
                let key = (
                    v["block_number"].as_u64().expect("n"),
                    v["block_hash"].as_str().expect("h").to_string(),
                    v["log_index"].as_u64().expect("i"),
                );
                assert_eq!(self.blocks.get(&key.0), Some(&key.1), "a log of a block the consumer holds");
                assert_eq!(hex_u64(&v["log"]["logIndex"]), key.2);
                self.logs.insert(key);
            }
            Some("tx") => assert!(v["tx"]["hash"].is_string()),
            Some("reorg") => {
                self.reorgs += 1;
                for d in v["dropped"].as_array().expect("dropped") {
                    let n = d["number"].as_u64().expect("n");
                    let h = d["hash"].as_str().expect("h");
                    assert_eq!(self.blocks.remove(&n).as_deref(), Some(h), "undo of a block held");
                    for l in d["log_ids"].as_array().into_iter().flatten() {
                        let parts: Vec<&str> = l.as_str().unwrap_or_default().split(':').collect();
                        let key = (n, h.to_string(), parts.get(2).and_then(|i| i.parse().ok()).unwrap_or(u64::MAX));
                        assert!(self.logs.remove(&key), "undo of a log held: {l}");
                    }
                }
                let fork = v["fork"]["number"].as_u64().expect("fork");
                assert_eq!(self.blocks.keys().next_back().copied(), Some(fork), "undone down to the fork point");
            }
            other => panic!("unknown message type {other:?}: {v}"),
        }
    }
}

async fn node_chain(anvil: &Anvil) -> BTreeMap<u64, String> {
    let head = anvil.head().await;
    let mut out = BTreeMap::new();
    for n in 0..=head {
        out.insert(n, anvil.block(n, false).await["hash"].as_str().expect("hash").to_string());
    }
    out
}

/// Read messages until the consumer's chain equals the node's.
async fn converge(msgs: &mut consumer::pull::Stream, applied: &mut Applied, anvil: &Anvil) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let want = node_chain(anvil).await;
        if applied.blocks == want {
            return;
        }
        assert!(Instant::now() < deadline, "consumer holds {} blocks, the node {}", applied.blocks.len(), want.len());
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), msgs.next()).await {
            let m = m.expect("message");
            let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
            let v: Value = serde_json::from_slice(&m.payload).expect("JSON payload");
            applied.apply(&id.unwrap_or_else(|| panic!("no Nats-Msg-Id on {v}")), &v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_holds_anvils_chain_through_reorgs() {
    init_tracing();
    let nats = NatsServer::start().await;
    let anvil = Anvil::start(&[]).await;
    let (emitter, _) = crate::decoded::emit_chain(&anvil, 10).await;
    let db = temp_db();
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url], &["a", "b"]);
    config.poll_interval_ms = 100;
    config.alerts.enabled = false;
    config.sink.nats = Some(NatsSinkConfig { url: nats.url(), stream: "chain".into(), ..NatsSinkConfig::default() });
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let api = app.start_api(Some("127.0.0.1:0".parse().expect("addr")), &cancel).await.expect("api").expect("enabled");
    let follow = spawn_follow(&app, &cancel);

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        if let Ok(s) = js.get_stream("chain").await {
            break s;
        }
        assert!(Instant::now() < deadline, "the sink never created its stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let info = stream.cached_info();
    assert_eq!(info.config.subjects, ["blockstreamer.31337.>"]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
    let c = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut msgs = c.messages().await.expect("messages");
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    assert!(!applied.logs.is_empty(), "logs published");

    for (k, depth) in [1u64, 3, 12].into_iter().enumerate() {
        let reorgs = applied.reorgs;
        reorg_with_logs(&anvil, &emitter, depth, u64::try_from(k).unwrap_or(0) + 1).await;
        anvil.mine(1).await;
        converge(&mut msgs, &mut applied, &anvil).await;
        assert!(applied.reorgs > reorgs, "depth {depth}: a reorg message");
    }
    // The logs held are the node's.
    let head = anvil.head().await;
    let f = json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}")});
    let node_logs: BTreeSet<(u64, String, u64)> = anvil
        .call("eth_getLogs", rpc_params![f])
        .await
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (
                hex_u64(&l["blockNumber"]),
                l["blockHash"].as_str().unwrap_or_default().to_string(),
                hex_u64(&l["logIndex"]),
            )
        })
        .collect();
    assert_eq!(applied.logs, node_logs);
    let pos: (i64, i64) = sqlx::query_as("SELECT number, messages FROM sink_positions WHERE sink = 'nats'")
        .fetch_one(&crate::helpers::inspect(&db.path).await)
        .await
        .expect("position row");
    assert_eq!(u64::try_from(pos.0).ok(), Some(head), "the position is the head");
    assert_eq!(u64::try_from(pos.1).ok(), Some(u64::try_from(applied.ids.len()).unwrap_or(0)), "every message once");
    let sinks = crate::http::get(&crate::http::client(), &format!("http://{}/v1/sinks", api.addr())).await.json();
    let s = &sinks["sinks"][0];
    assert_eq!(
        (s["name"].as_str(), s["position"].as_u64(), s["backlog_blocks"].as_u64()),
        (Some("nats"), Some(head), Some(0)),
        "{sinks}"
    );
    assert!(s["last_error"].is_null() && s["messages"].as_u64() == u64::try_from(pos.1).ok(), "{sinks}");
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}
