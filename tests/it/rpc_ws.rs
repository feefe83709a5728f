//! `/rpc` over WebSocket against anvil, with jsonrpsee's WebSocket client: `newHeads` headers
//! equal the node's blocks (body left out), a `logs` subscription gets each new log as the node
//! has it, and through `anvil_reorg` at depths 1, 3 and 12 the removed logs (`removed: true`)
//! before the new ones, ending with the node's logs exactly. Named keys: 401 without one, a
//! read-only key's allowlist and rate, rows per key. A subscriber that never reads is cut off
//! while other clients are served, within a memory bound.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde_json::{Value, json};

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::RpcKey;

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, hex_u64, init_tracing, inspect, scalar_i64, spawn_follow, temp_db};
use crate::http::{client, post};
use crate::logs_reorg::reorg_with_logs;

/// (block number, block hash, log index).
type Key = (u64, String, u64);

fn key(l: &Value) -> Key {
    (
        hex_u64(&l["blockNumber"]),
        l["blockHash"].as_str().expect("blockHash").to_ascii_lowercase(),
        hex_u64(&l["logIndex"]),
    )
}

/// The node's logs of `emitter`, by key.
async fn node_logs(anvil: &Anvil, emitter: &str) -> BTreeMap<Key, Value> {
    let head = anvil.head().await;
    let f = json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter});
    let logs = anvil.call("eth_getLogs", rpc_params![f]).await;
    logs.as_array().expect("logs").iter().map(|l| (key(l), l.clone())).collect()
}

async fn ws(url: &str) -> WsClient {
    WsClientBuilder::default()
        .request_timeout(Duration::from_secs(30))
        .build(url)
        .await
        .unwrap_or_else(|e| panic!("ws {url}: {e}"))
}

/// What a logs subscriber holds, kept by applying notifications in order.
struct Holder {
    logs: BTreeMap<Key, Value>,
    /// Per notification since the last `mark`: was it a removal?
    seq: Vec<bool>,
}

impl Holder {
    fn apply(&mut self, l: Value) {
        let k = key(&l);
        if l["removed"] == true {
            assert!(self.logs.remove(&k).is_some(), "removed a log never sent: {k:?}");
            self.seq.push(true);
        } else {
            assert!(self.logs.insert(k.clone(), l).is_none(), "duplicate log {k:?}");
            self.seq.push(false);
        }
    }

    /// Read notifications until the holder has exactly the node's logs.
    async fn converge(&mut self, sub: &mut Subscription<Value>, anvil: &Anvil, emitter: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let want = node_logs(anvil, emitter).await;
            if self.logs.keys().eq(want.keys()) {
                for (k, l) in &want {
                    assert_eq!(self.logs.get(k), Some(l), "the node's log object, as the node sends it");
                }
                return;
            }
            assert!(Instant::now() < deadline, "held {} logs, the node has {}", self.logs.len(), want.len());
            if let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                self.apply(n.expect("notification"));
            }
        }
    }
}

/// Our header of a block equals the node's block object without the body fields.
async fn same_header(anvil: &Anvil, head: &Value) {
    let h = head["hash"].as_str().expect("hash");
    let block = anvil.call("eth_getBlockByHash", rpc_params![h, false]).await;
    let mut want = block.as_object().expect("block").clone();
    for k in ["transactions", "uncles", "withdrawals", "size", "totalDifficulty"] {
        want.remove(k);
    }
    assert_eq!(head.as_object(), Some(&want), "newHeads header of {h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_heads_and_logs_and_the_removed_logs_of_reorgs() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    let (emitter, _) = crate::decoded::emit_chain(&anvil, 12).await;
    let db = temp_db();
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url], &["a", "b"]);
    config.poll_interval_ms = 100;
    config.alerts.enabled = false;
    config.rpc.max_logs = 4;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let api = app.start_api(Some("127.0.0.1:0".parse().expect("addr")), &cancel).await.expect("api").expect("enabled");
    let follow = spawn_follow(&app, &cancel);
    let pool = inspect(&db.path).await;
    crate::logs_reorg::wait_stored(&pool, &anvil, &emitter).await;

    let us = ws(&format!("ws://{}/rpc", api.addr())).await;
    // Past rpc.max_logs (4 here), eth_getLogs names a range that fits, and that range is served.
    let whole = json!({"fromBlock": "0x0", "toBlock": "latest", "address": emitter});
    let e = us.request::<Value, _>("eth_getLogs", rpc_params![whole]).await.expect_err("over max_logs").to_string();
    let range = e.split_once("block range [").and_then(|(_, r)| r.split_once(']')).map(|(r, _)| r.to_string());
    let (a, b) = range.as_deref().and_then(|r| r.split_once(", ")).unwrap_or_else(|| panic!("no range in {e}"));
    let fits = json!({"fromBlock": a, "toBlock": b, "address": emitter});
    let mine: Value = us.request("eth_getLogs", rpc_params![fits.clone()]).await.expect("the range that fits");
    assert_eq!(mine, anvil.call("eth_getLogs", rpc_params![fits]).await);
    assert!(mine.as_array().is_some_and(|l| !l.is_empty() && l.len() <= 4), "{mine}");
    // Plain calls work over the socket too.
    let n: String = us.request("eth_blockNumber", rpc_params![]).await.expect("eth_blockNumber");
    assert_eq!(hex_u64(&json!(n)), anvil.head().await);
    let mut logs: Subscription<Value> = us
        .subscribe("eth_subscribe", rpc_params!["logs", json!({"address": emitter})], "eth_unsubscribe")
        .await
        .expect("subscribe logs");
    let mut heads: Subscription<Value> =
        us.subscribe("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe").await.expect("subscribe heads");
    let bad = us.request::<Value, _>("eth_subscribe", rpc_params!["newPendingTransactions"]).await;
    assert!(bad.is_err_and(|e| e.to_string().contains("unsupported subscription")));

    // New logs: the subscriber gets each, as the node has it.
    let mut h = Holder { logs: node_logs(&anvil, &emitter).await, seq: Vec::new() };
    let accts = anvil.accounts().await;
    for k in 0..3u64 {
        let tx = json!({"from": accts[1], "to": emitter, "data": crate::logs_reorg::transfer_call(500 + k), "gas": "0x40000"});
        anvil.call("eth_sendTransaction", rpc_params![tx]).await;
    }
    h.converge(&mut logs, &anvil, &emitter).await;
    assert_eq!(h.seq, vec![false; 3], "three new logs");

    for (k, depth) in [1u64, 3, 12].into_iter().enumerate() {
        let before = node_logs(&anvil, &emitter).await;
        h.seq.clear();
        reorg_with_logs(&anvil, &emitter, depth, u64::try_from(k).unwrap_or(0) + 1).await;
        anvil.mine(1).await;
        h.converge(&mut logs, &anvil, &emitter).await;
        let after = node_logs(&anvil, &emitter).await;
        let dropped = before.keys().filter(|k| !after.contains_key(k)).count();
        let removed = h.seq.iter().filter(|r| **r).count();
        assert!(dropped > 0 && removed == dropped, "depth {depth}: {removed} removed of {dropped} dropped");
        let first_new = h.seq.iter().position(|r| !*r).unwrap_or(h.seq.len());
        assert!(h.seq[first_new..].iter().all(|r| !*r), "depth {depth}: the removed logs come before the new ones");
    }

    // Heads: one per new canonical block (the replacements after each reorg), ending at the
    // node's head, each equal to the node's block without its body.
    let head = anvil.head().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = json!(null);
    while last.is_null() || hex_u64(&last["number"]) != head || last["hash"] != anvil.block(head, false).await["hash"] {
        assert!(Instant::now() < deadline, "newHeads never reached {head}: {last}");
        if let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(500), heads.next()).await {
            last = n.expect("head");
            if anvil.call("eth_getBlockByHash", rpc_params![last["hash"].clone(), false]).await.is_object() {
                same_header(&anvil, &last).await;
            }
        }
    }
    heads.unsubscribe().await.expect("unsubscribe");
    assert_eq!(
        us.request::<bool, _>("eth_unsubscribe", rpc_params!["0x00000000000000000000000000000001"]).await.ok(),
        Some(false)
    );
    let m = crate::http::get(&client(), &format!("http://{}/metrics", api.addr())).await.text();
    assert!(metric(&m, "blockstreamer_rpc_subscription_reorgs_total{topic=\"logs\"}") >= 3.0, "reorg metrics");
    drop(us);
    cancel.cancel();
    api.stop().await;
    follow.await.expect("join").expect("follow");
}

fn keys() -> Vec<RpcKey> {
    let k = |name: &str, key: &str, methods: &[&str], read_only, rate| RpcKey {
        name: name.into(),
        key: key.into(),
        rate_per_second: rate,
        burst: None,
        methods: methods.iter().map(|m| (*m).to_string()).collect(),
        read_only,
    };
    vec![
        k(
            "public",
            "pub-secret",
            &["eth_get*", "eth_chainId", "eth_blockNumber", "eth_subscribe", "eth_unsubscribe"],
            true,
            Some(5.0),
        ),
        k("bot", "bot-secret", &["*"], false, None),
    ]
}

/// A WebSocket client that sends and never reads, with a small receive buffer so the server's
/// writes back up quickly.
async fn never_reading(addr: std::net::SocketAddr, path: &str) -> std::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let s = sock.connect(addr).await.expect("connect").into_std().expect("std");
    s.set_nonblocking(false).expect("blocking");
    let mut s = s;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("101");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// One masked text frame (clients must mask).
fn frame(text: &str) -> Vec<u8> {
    let p = text.as_bytes();
    let mut f = vec![0x81];
    match p.len() {
        n if n < 126 => f.push(0x80 | u8::try_from(n).unwrap_or(0)),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&u64::try_from(n).unwrap_or(0).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The value of the sample `name{labels}` in a Prometheus text page (0 when absent).
fn metric(page: &str, name: &str) -> f64 {
    page.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

fn rss_mb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_limit_clients_and_a_subscriber_that_never_reads_is_cut_off() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(40, 8).await;
    let head = anvil.head().await;
    let mut bed = crate::bed::Bed::new(crate::bed::Truth::Anvil(anvil), 2, |c| {
        c.alerts.enabled = false;
        c.rpc.keys = keys();
        c.rpc.ws_queue_bytes = 64 << 10;
        c.api.stream_send_timeout_ms = 1_000;
    })
    .await;
    let (api, base) = bed.serve_api().await;
    bed.follow(0);
    crate::rpc_endpoint::wait_stored(&bed, head).await;
    let c = client();
    let call = |m: &str, p: Value| json!({"jsonrpc": "2.0", "id": 1, "method": m, "params": p}).to_string();

    // Keys: none → 401; the public key reads, may not call or write, and has a rate.
    let r = post(&c, &format!("{base}/rpc"), call("eth_chainId", json!([])), &[]).await;
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (401, json!(-32001)), "{}", r.text());
    let r = post(&c, &format!("{base}/rpc/wrong"), call("eth_chainId", json!([])), &[]).await;
    assert_eq!(r.status, 401);
    let public = format!("{base}/rpc/pub-secret");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = post(&c, &public, call("eth_getBlockByNumber", json!(["0x1", false])), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(hex_u64(&r.json()["result"]["number"]), 1);
    for (m, p) in [
        ("eth_call", json!([{"to": "0x0000000000000000000000000000000000000001"}, "latest"])),
        ("eth_sendRawTransaction", json!(["0x02"])),
    ] {
        let r = post(&c, &public, call(m, p), &[]).await.json();
        assert_eq!(r["error"]["code"], -32004, "{m}: {r}");
    }
    let batch: Vec<Value> = (0..6).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"})).collect();
    let r = post(&c, &public, Value::Array(batch).to_string(), &[]).await;
    assert_eq!(r.status, 429, "6 calls over a burst of 5: {}", r.text());
    assert!(r.headers.get("retry-after").is_some());
    let errs = r.json();
    assert!(errs.as_array().is_some_and(|a| a.len() == 6 && a.iter().all(|e| e["error"]["code"] == -32005)), "{errs}");
    let bot = [("authorization", "Bearer bot-secret")];
    let r = post(&c, &format!("{base}/rpc"), call("eth_sendRawTransaction", json!(["0x02"])), &bot).await.json();
    assert_ne!(r["error"]["code"], -32004, "the bot key may write (the node judges the bytes): {r}");

    // A subscriber that never reads, flooding requests: cut off; meanwhile others are served.
    let rss_before = rss_mb();
    let addr = api.addr();
    let mut slow = never_reading(addr, "/rpc/bot-secret").await;
    slow.write_all(&frame(r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#)).expect("send");
    let blocks: Vec<Value> = (1..=40)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [format!("{i:#x}"), true]}))
        .collect();
    let big = frame(&Value::Array(blocks).to_string());
    let flooder = std::thread::spawn(move || {
        for _ in 0..200 {
            if slow.write_all(&big).is_err() {
                break;
            }
        }
        slow
    });
    let other = ws(&format!("ws://{addr}/rpc/bot-secret")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = format!("{base}/metrics");
    loop {
        let t = Instant::now();
        let n: String = other.request("eth_blockNumber", rpc_params![]).await.expect("another client is served");
        assert_eq!(hex_u64(&json!(n)), head);
        let r = post(&c, &format!("{base}/rpc"), call("eth_blockNumber", json!([])), &bot).await;
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "others wait {:?}", t.elapsed());
        let m = crate::http::get(&c, &metrics).await.text();
        if metric(&m, "blockstreamer_rpc_ws_cutoffs_total{reason=\"slow\"}") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber that never reads was not cut off");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let grew = rss_mb().saturating_sub(rss_before);
    assert!(grew < 200, "memory grew {grew} MB while a client did not read");
    // The server closed it: reading drains what was sent, then the end.
    let mut slow = flooder.join().expect("flooder");
    slow.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the connection was closed after the cut-off");

    // Every call is a row under its key's name; refusals too.
    let rows = |sql: &'static str| scalar_i64(&bed.pool, sql);
    let mut seen = (0, 0);
    for _ in 0..100 {
        seen = (
            rows("SELECT count(*) FROM client_requests WHERE key_name = 'public' AND outcome = 'refused' AND rpc_code = -32005").await,
            rows("SELECT count(*) FROM client_requests WHERE key_name = 'bot' AND method = 'eth_blockNumber'").await,
        );
        if seen.0 == 6 && seen.1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.0 == 6 && seen.1 > 0, "client_requests by key: {seen:?}");
    drop(other);
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}
