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
use blockstreamer::config::{ContractConfig, NatsSinkConfig, SinkKind};

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, free_port, hex_u64, init_tracing, spawn_follow, temp_db};
use crate::logs_reorg::reorg_with_logs;

/// A nats-server with JetStream on a free loopback port, killed (by PID) on drop. Its store
/// directory outlives a `stop`, so a restart finds the stream again (unless `wipe`d).
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self { child: None, port: free_port(), dir };
        s.restart().await;
        s
    }

    /// Start it again on the same port and store directory.
    pub async fn restart(&mut self) {
        let bin = crate::helpers::find_tool("NATS_SERVER", &["nats-server"], ".ci/run installs Debian's nats-server");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kill it (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill it and delete everything it stored.
    pub fn wipe(&mut self) {
        self.stop();
        for e in std::fs::read_dir(self.dir.path()).expect("read dir").flatten() {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JetStream pull consumer reading `stream` from its first message, for a test to count.
pub async fn read_stream(url: &str, stream: &str) -> consumer::pull::Stream {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        if let Ok(s) = js.get_stream(stream).await {
            break s;
        }
        assert!(Instant::now() < deadline, "the sink never created its stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c = s
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    c.messages().await.expect("messages")
}

/// Apply every message that arrives within `quiet` of the previous one.
pub async fn drain(msgs: &mut consumer::pull::Stream, applied: &mut Applied, quiet: Duration) {
    while let Ok(Some(m)) = tokio::time::timeout(quiet, msgs.next()).await {
        let m = m.expect("message");
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
        let v: Value = serde_json::from_slice(&m.payload).expect("JSON payload");
        applied.apply(&id.unwrap_or_else(|| panic!("no Nats-Msg-Id on {v}")), &v);
        applied.payloads.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
}

/// Every payload validates against docs/sink.schema.json (Python's jsonschema); the count of
/// each message type.
pub fn validate_schema(payloads: &[String], dir: &std::path::Path) -> Value {
    let python = crate::helpers::find_tool("CLIENT_PYTHON", &["python3"], ".ci/run makes a venv with jsonschema");
    let file = dir.join("messages.jsonl");
    std::fs::write(&file, payloads.join("\n") + "\n").expect("write messages");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(python)
        .arg(format!("{root}/tests/clients/validate_sink.py"))
        .arg(format!("{root}/docs/sink.schema.json"))
        .arg(&file)
        .output()
        .expect("run the validator");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "messages do not validate: {text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).expect("counts")
}

/// `blockstreamer consume --db FILE` as a process, killed on drop.
pub struct ConsumeProcess(Child);

impl ConsumeProcess {
    pub fn spawn(url: &str, stream: &str, db: &std::path::Path, config: Option<&std::path::Path>) -> Self {
        let mut c = Command::new(env!("CARGO_BIN_EXE_blockstreamer"));
        c.args(["consume", "--nats", url, "--stream", stream, "--db"]).arg(db);
        if let Some(p) = config {
            c.arg("--config").arg(p);
        }
        let log = std::fs::File::create(db.with_extension("log")).expect("consumer log");
        Self(c.stdout(Stdio::null()).stderr(log).spawn().expect("spawn consume"))
    }
}

impl Drop for ConsumeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until the consumer's file holds `want` as its canonical chain.
pub async fn consumer_holds(db: &std::path::Path, want: &BTreeMap<u64, String>) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if db.exists() {
            let pool = crate::helpers::inspect(db).await;
            let rows: Vec<(i64, String)> = sqlx::query_as("SELECT number, hash FROM canonical_blocks ORDER BY number")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            pool.close().await;
            let got: BTreeMap<u64, String> =
                rows.into_iter().map(|(n, h)| (u64::try_from(n).unwrap_or(0), h)).collect();
            if &got == want {
                return;
            }
            let log = std::fs::read_to_string(db.with_extension("log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "the consumer's file holds {} blocks, the node {}; its log:\n{log}",
                got.len(),
                want.len()
            );
        }
        let log = std::fs::read_to_string(db.with_extension("log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the consumer never created its file; its log:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a consumer holds after applying the messages in order; every id once (a second
/// delivery fails the test), blocks linked, undos of what is held.
#[derive(Default)]
pub struct Applied {
    pub blocks: BTreeMap<u64, String>,
    pub logs: BTreeSet<(u64, String, u64)>,
    pub events: BTreeSet<(u64, String, u64)>,
    pub reorgs: usize,
    pub ids: BTreeSet<String>,
    /// Block heights in the order their messages came.
    pub block_order: Vec<u64>,
    /// Transaction messages per (height, block hash).
    pub txs: BTreeMap<(u64, String), usize>,
    pub payloads: Vec<String>,
}

impl Applied {
    /// Transaction messages of the blocks held.
    pub fn held_txs(&self) -> usize {
        self.blocks.iter().map(|(n, h)| self.txs.get(&(*n, h.clone())).copied().unwrap_or(0)).sum()
    }
}

impl Applied {
    pub fn apply(&mut self, id: &str, v: &Value) {
        assert!(self.ids.insert(id.to_string()), "message {id} delivered twice");
        match v["type"].as_str() {
            Some("block") => {
                let n = v["number"].as_u64().expect("number");
                let h = v["hash"].as_str().expect("hash").to_string();
                let base = format!("31337:block:{n}:{h}");
                assert!(id == base || id.strip_prefix(&base).is_some_and(|r| r.starts_with(":redo")), "{id}");
                assert_eq!(v["block"]["hash"].as_str(), Some(h.as_str()), "the node's block JSON");
                if let Some(old) = self.blocks.get(&n) {
                    panic!("block {n} {h} arrived while {old} was not undone: the reorg message must come first");
                }
                if n > 0 && !self.blocks.is_empty() {
                    assert_eq!(self.blocks.get(&(n - 1)).map(String::as_str), v["parent_hash"].as_str(), "links");
                }
                self.blocks.insert(n, h);
                self.block_order.push(n);
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
            Some("tx") => {
                let n = v["block_number"].as_u64().expect("n");
                assert_eq!(self.blocks.get(&n).map(String::as_str), v["block_hash"].as_str(), "a tx of a block held");
                assert_eq!(v["tx"]["blockHash"], v["block_hash"]);
                *self.txs.entry((n, v["block_hash"].as_str().unwrap_or_default().to_string())).or_default() += 1;
            }
            Some("event") => {
                let key = (
                    v["block_number"].as_u64().expect("n"),
                    v["block_hash"].as_str().expect("h").to_string(),
                    v["log_index"].as_u64().expect("i"),
                );
                assert!(self.logs.contains(&key), "an event of a log held: {v}");
                assert!(v["values"].is_object() != v["error"].is_string(), "values or an error: {v}");
                self.events.insert(key);
            }
            Some("reorg") => {
                self.reorgs += 1;
                for d in v["dropped"].as_array().expect("dropped") {
                    let n = d["number"].as_u64().expect("n");
                    let h = d["hash"].as_str().expect("h");
                    // Undo is by hash: a block past the consumer's tip may be listed (the
                    // sink died while publishing it); one it holds under another hash may not.
                    match self.blocks.get(&n) {
                        Some(held) => assert_eq!(held, h, "undo of block {n}: held under another hash"),
                        None => {
                            assert!(self.blocks.keys().next_back().is_none_or(|t| *t < n), "undo of a hole at {n}");
                            continue;
                        }
                    }
                    self.blocks.remove(&n);
                    for l in d["log_ids"].as_array().into_iter().flatten() {
                        let parts: Vec<&str> = l.as_str().unwrap_or_default().split(':').collect();
                        let key = (n, h.to_string(), parts.get(2).and_then(|i| i.parse().ok()).unwrap_or(u64::MAX));
                        assert!(self.logs.remove(&key), "undo of a log held: {l}");
                        self.events.remove(&key);
                    }
                }
                let fork = v["fork"]["number"].as_u64().expect("fork");
                assert_eq!(self.blocks.keys().next_back().copied(), Some(fork), "undone down to the fork point");
            }
            other => panic!("unknown message type {other:?}: {v}"),
        }
    }
}

pub const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";
const NOTE: &str = "event Note(string indexed tag, bytes32 indexed id, string text, int256 delta, uint256[] list)";

/// The emitter of `decoded::emit_chain` as a decoded contract.
pub fn emitter_contract(address: &str) -> ContractConfig {
    ContractConfig {
        name: "tok".into(),
        address: vec![address.to_string()],
        events: vec![TRANSFER.into(), NOTE.into()],
        ..ContractConfig::default()
    }
}

pub async fn node_chain(anvil: &Anvil) -> BTreeMap<u64, String> {
    let head = anvil.head().await;
    let mut out = BTreeMap::new();
    for n in 0..=head {
        out.insert(n, anvil.block(n, false).await["hash"].as_str().expect("hash").to_string());
    }
    out
}

/// Read messages until the consumer's chain equals the node's.
pub async fn converge(msgs: &mut consumer::pull::Stream, applied: &mut Applied, anvil: &Anvil) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let want = node_chain(anvil).await;
        if applied.blocks == want {
            return;
        }
        assert!(Instant::now() < deadline, "consumer holds {} blocks, the node {}", applied.blocks.len(), want.len());
        drain(msgs, applied, Duration::from_millis(300)).await;
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
    config.index.contracts = vec![emitter_contract(&emitter)];
    config.sink.nats = Some(NatsSinkConfig {
        url: nats.url(),
        stream: "chain".into(),
        kinds: vec![SinkKind::Blocks, SinkKind::Txs, SinkKind::Logs, SinkKind::Events],
        ..NatsSinkConfig::default()
    });
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let api = app.start_api(Some("127.0.0.1:0".parse().expect("addr")), &cancel).await.expect("api").expect("enabled");
    let follow = spawn_follow(&app, &cancel);
    // The reference consumer applies the same stream into a file of its own, decoding the
    // same contract.
    let consumer_db = db.dir.path().join("consumer.db");
    let consumer_cfg = db.dir.path().join("consumer.toml");
    std::fs::write(
        &consumer_cfg,
        format!("[[index.contracts]]\nname = \"tok\"\naddress = \"{emitter}\"\nevents = [{TRANSFER:?}, {NOTE:?}]\n"),
    )
    .expect("consumer config");
    let consume = ConsumeProcess::spawn(&nats.url(), "chain", &consumer_db, Some(&consumer_cfg));

    let mut msgs = read_stream(&nats.url(), "chain").await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let info = js.get_stream("chain").await.expect("stream").cached_info().clone();
    assert_eq!(info.config.subjects, ["blockstreamer.31337.>"]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
    let mut applied = Applied::default();
    converge(&mut msgs, &mut applied, &anvil).await;
    assert!(!applied.logs.is_empty(), "logs published");
    assert!(!applied.events.is_empty(), "events published");

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
    // Every log of the emitter decodes (or fails to, as the table's decode errors) once.
    assert_eq!(applied.events.len(), node_logs.len(), "one event per emitter log");
    let counts = validate_schema(&applied.payloads, db.dir.path());
    for kind in ["block", "tx", "log", "event", "reorg"] {
        assert!(counts[kind].as_u64().unwrap_or(0) > 0, "{kind} messages validated: {counts}");
    }
    // The consumer's file: anvil's chain, its logs, its decoded events.
    let want = node_chain(&anvil).await;
    consumer_holds(&consumer_db, &want).await;
    drop(consume);
    let pool = crate::helpers::inspect(&consumer_db).await;
    let logs = crate::helpers::scalar_i64(
        &pool,
        "SELECT count(*) FROM logs_view WHERE block_number IN (SELECT number FROM canonical_blocks)",
    )
    .await;
    assert_eq!(u64::try_from(logs).ok(), Some(u64::try_from(node_logs.len()).unwrap_or(0)), "the consumer's logs");
    let ours = crate::helpers::inspect(&db.path).await;
    let q = "SELECT count(*) FROM evt_tok_transfer_view WHERE block_number IN (SELECT number FROM canonical_blocks)";
    assert_eq!(crate::helpers::scalar_i64(&pool, q).await, crate::helpers::scalar_i64(&ours, q).await, "decoded rows");
    crate::helpers::integrity_ok(&pool).await;
    pool.close().await;
    // Started again, it resumes after the last message it applied: nothing is applied twice.
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["consume", "--nats", &nats.url(), "--stream", "chain", "--run-for", "2", "--db"])
        .arg(&consumer_db)
        .output()
        .expect("consume again");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains(" 0 blocks applied, 0 already held, 0 reorgs"), "{err}");
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
