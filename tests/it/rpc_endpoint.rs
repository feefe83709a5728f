//! `POST /rpc` against a real node: the same calls sent to anvil and to blockstreamer in front
//! of it give equal answers (JSON-normalised); stored data comes from the store, state reads
//! and writes go through the fleet, a signed transaction sent through us is stored, and
//! malformed calls, filters and limits get the errors clients expect.

use std::time::Duration;

use jsonrpsee::rpc_params;
use serde_json::{Value, json};

use crate::bed::{Bed, Truth};
use crate::helpers::{Anvil, hex_u64, init_tracing};
use crate::http::{HttpClient, Resp, client, post};

async fn rpc(c: &HttpClient, url: &str, body: &Value) -> Resp {
    post(c, url, body.to_string(), &[]).await
}

fn call(method: &str, params: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

/// The same call to anvil and to us: equal JSON; returns ours and the source header.
async fn same(c: &HttpClient, anvil: &str, ours: &str, method: &str, params: Value) -> (Value, String) {
    let body = call(method, &params);
    let theirs = rpc(c, anvil, &body).await.json();
    let r = rpc(c, ours, &body).await;
    assert_eq!(r.status, 200, "{method}: {}", r.text());
    let mine = r.json();
    assert_eq!(mine, theirs, "{method}({params})");
    let source = r.headers.get("x-blockstreamer-source").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (mine, source)
}

/// `cast args… --rpc-url url`'s output (cast is what many users have; `.ci/run` installs it).
fn cast(url: &str, args: &[&str]) -> String {
    let bin = crate::helpers::find_tool("CAST_BIN", &["cast"], ".ci/run installs it from npm");
    let out = std::process::Command::new(bin).args(args).args(["--rpc-url", url]).output().expect("run cast");
    assert!(out.status.success(), "cast {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The same cast command against anvil and against us: the same output.
fn same_cast(anvil: &str, ours: &str, args: &[&str]) {
    let (theirs, mine) = (cast(anvil, args), cast(ours, args));
    assert!(!mine.trim().is_empty(), "cast {args:?} printed nothing");
    assert_eq!(mine, theirs, "cast {args:?}");
}

/// Serve the API over `bed`, follow from 0 until anvil's `head` is stored; the anvil, its URL
/// and ours.
async fn serve_and_sync(bed: &mut Bed, head: u64) -> (blockstreamer::api::ApiServer, String, String) {
    let (api, base) = bed.serve_api().await;
    bed.follow(0);
    wait_stored(bed, head).await;
    let Truth::Anvil(anvil) = &*bed.truth else { unreachable!("anvil bed") };
    (api, anvil.url(), base)
}

/// Run `tests/clients/viem.cjs` against the node and us (viem from `.ci/run`'s npm tools).
fn viem(anvil: &str, ours: &str, tx: &str, log_address: &str, account: &str) {
    let modules = std::env::var("CLIENT_NODE_MODULES")
        .unwrap_or_else(|_| panic!("CLIENT_NODE_MODULES is not set: .ci/run installs viem and sets it"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/viem.cjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .args([anvil, ours, tx, log_address, account])
        .env("NODE_PATH", modules)
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("ok "), "viem: {text}{}", String::from_utf8_lossy(&out.stderr));
}

/// Run `tests/clients/web3py.py` against the node and us (web3.py in `.ci/run`'s venv).
fn web3py(anvil: &str, ours: &str, tx: &str, log_address: &str, account: &str) {
    let python = std::env::var("CLIENT_PYTHON")
        .unwrap_or_else(|_| panic!("CLIENT_PYTHON is not set: .ci/run makes a venv with web3.py and sets it"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/web3py.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args([anvil, ours, tx, log_address, account])
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("ok "), "web3.py: {text}{}", String::from_utf8_lossy(&out.stderr));
}

pub async fn wait_stored(bed: &Bed, n: u64) {
    for _ in 0..300 {
        if crate::bed::stored_max(&bed.pool).await >= i64::try_from(n).expect("i64") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("block {n} not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_the_nodes_answers_from_the_store_and_through_the_fleet() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    crate::anvil_logs::with_logging_calls(&anvil, 6, 3).await;
    // Empty blocks between: whole-chain log filters span more heights than are scanned block by
    // block, so they go through the log index; short ranges are scanned.
    anvil.mine(16).await;
    anvil.mine_with_txs(4, 4).await;
    let accts = anvil.accounts().await;
    // An access-list (type 1) and a legacy (type 0) transaction too.
    let t1 = json!({"from": accts[1], "to": accts[2], "value": "0x5", "gasPrice": "0x77359400", "accessList": [{"address": accts[3], "storageKeys": []}]});
    anvil.call("eth_sendTransaction", rpc_params![t1]).await;
    let t0 = json!({"from": accts[2], "to": accts[3], "value": "0x7", "gasPrice": "0x77359400"});
    let h0 = anvil.call("eth_sendTransaction", rpc_params![t0]).await;
    // Automine may answer before the block is in: wait for the receipt, then read the head.
    mined_receipt(&anvil, h0.as_str().unwrap_or_default()).await;
    let head = anvil.head().await;
    let mut bed = Bed::new(Truth::Anvil(anvil), 2, |c| c.alerts.enabled = false).await;
    let (api, a, base) = serve_and_sync(&mut bed, head).await;
    let Truth::Anvil(anvil) = &*bed.truth else { unreachable!("anvil bed") };
    let us = format!("{base}/rpc");
    let c = client();

    for (m, p) in [("eth_chainId", json!([])), ("net_version", json!([])), ("eth_blockNumber", json!([]))] {
        let (_, src) = same(&c, &a, &us, m, p).await;
        assert_eq!(src, "store", "{m}");
    }
    // Every block, full and hashes, by number and by hash, with counts and receipts.
    for n in 0..=head {
        let tag = format!("{n:#x}");
        for full in [true, false] {
            let (b, src) = same(&c, &a, &us, "eth_getBlockByNumber", json!([tag, full])).await;
            assert_eq!(src, "store", "block {n}");
            same(&c, &a, &us, "eth_getBlockByHash", json!([b["result"]["hash"], full])).await;
        }
        same(&c, &a, &us, "eth_getBlockTransactionCountByNumber", json!([tag])).await;
        same(&c, &a, &us, "eth_getUncleCountByBlockNumber", json!([tag])).await;
        let (_, src) = same(&c, &a, &us, "eth_getBlockReceipts", json!([tag])).await;
        assert_eq!(src, "store");
    }
    for tag in ["latest", "earliest"] {
        same(&c, &a, &us, "eth_getBlockByNumber", json!([tag, true])).await;
    }
    // Every transaction of every type, by hash and by position, and its receipt.
    let mut types = std::collections::BTreeSet::new();
    for n in 1..=head {
        let b = anvil.block(n, true).await;
        for (i, t) in b["transactions"].as_array().expect("txs").iter().enumerate() {
            types.insert(t["type"].as_str().expect("type").to_string());
            let (_, src) = same(&c, &a, &us, "eth_getTransactionByHash", json!([t["hash"]])).await;
            assert_eq!(src, "store");
            same(&c, &a, &us, "eth_getTransactionReceipt", json!([t["hash"]])).await;
            same(&c, &a, &us, "eth_getTransactionByBlockNumberAndIndex", json!([format!("{n:#x}"), format!("{i:#x}")]))
                .await;
            same(&c, &a, &us, "eth_getTransactionByBlockHashAndIndex", json!([b["hash"], format!("{i:#x}")])).await;
        }
    }
    assert!(types.len() >= 3, "tx types seen: {types:?}");
    // Logs with filters.
    let log0 = anvil.call("eth_getLogs", rpc_params![json!({"fromBlock": "0x0", "toBlock": "latest"})]).await;
    let first = &log0[1]; // LOG1: one topic
    let filters = [
        json!({"fromBlock": "0x0", "toBlock": "latest"}),
        json!({"fromBlock": "0x1", "toBlock": format!("{head:#x}"), "address": first["address"]}),
        json!({"fromBlock": "0x0", "toBlock": "latest", "topics": [first["topics"][0]]}),
        json!({"fromBlock": "0x0", "toBlock": "latest", "topics": [null, first["topics"][0]]}),
        json!({"fromBlock": "0x0", "toBlock": "latest", "topics": [[first["topics"][0], format!("0x{}", "00".repeat(32))]]}),
        json!({"blockHash": first["blockHash"]}),
        json!({"fromBlock": "0x3", "toBlock": "0x4", "address": [first["address"], accts[0]]}),
    ];
    for f in &filters {
        let (v, src) = same(&c, &a, &us, "eth_getLogs", json!([f])).await;
        assert_eq!(src, "store", "{f}");
        let n = v["result"].as_array().expect("logs").len();
        assert!(n > 0 || f["topics"][0].is_null() && f.get("topics").is_some(), "{f}: no logs");
    }
    // A file from before the logs were kept apart (V15): the same answers, from the receipts.
    sqlx::query("UPDATE block_json SET logs = NULL").execute(&bed.pool).await.expect("forget kept logs");
    for f in &filters {
        let (_, src) = same(&c, &a, &us, "eth_getLogs", json!([f])).await;
        assert_eq!(src, "store", "{f} (no kept logs)");
    }
    // State reads go to a provider: a past balance, a call.
    let (_, src) = same(&c, &a, &us, "eth_getBalance", json!([accts[1], "0x2"])).await;
    assert!(src.starts_with('p'), "source {src}");
    same(&c, &a, &us, "eth_call", json!([{"to": first["address"], "data": "0x"}, "latest"])).await;
    same(&c, &a, &us, "eth_gasPrice", json!([])).await;
    // Unknown methods are the node's answer too; bad params are refused here, node-like.
    same(&c, &a, &us, "eth_nosuchmethod", json!([])).await;
    let bad = rpc(&c, &us, &call("eth_getBlockByNumber", &json!(["zz", true]))).await.json();
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    // A batch of 50 (mixed local and forwarded), in order, with a notification left out.
    let mut batch: Vec<Value> = (0..50)
        .map(|i| {
            let m = if i % 5 == 0 { "eth_getBalance" } else { "eth_getBlockByNumber" };
            let p =
                if i % 5 == 0 { json!([accts[0], "latest"]) } else { json!([format!("{:#x}", i % (head + 1)), false]) };
            json!({"jsonrpc": "2.0", "id": i, "method": m, "params": p})
        })
        .collect();
    let theirs = rpc(&c, &a, &Value::Array(batch.clone())).await.json();
    batch.push(json!({"jsonrpc": "2.0", "method": "eth_blockNumber"}));
    let r = rpc(&c, &us, &Value::Array(batch)).await;
    assert_eq!(r.json(), theirs);
    let src = r.headers.get("x-blockstreamer-source").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(src.contains("store") && src.contains('p'), "batch sources {src}");

    // A transaction signed elsewhere and sent through us appears in a stored block.
    let tx = json!({"from": accts[4], "to": accts[5], "value": "0x9", "gas": "0x5208", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "nonce": "0x0", "chainId": "0x7a69"});
    let raw = anvil.call("eth_signTransaction", rpc_params![tx]).await;
    let sent = rpc(&c, &us, &call("eth_sendRawTransaction", &json!([raw]))).await.json();
    let hash = sent["result"].as_str().unwrap_or_else(|| panic!("send: {sent}")).to_string();
    let receipt = mined_receipt(anvil, &hash).await;
    wait_stored(&bed, hex_u64(&receipt["blockNumber"])).await;
    let (mine, src) = same(&c, &a, &us, "eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!((mine["result"]["status"].as_str(), src.as_str()), (Some("0x1"), "store"));

    // cast, as users run it: the same output from us as from the node.
    let (log_addr, tx_hash) =
        (first["address"].as_str().expect("address"), first["transactionHash"].as_str().expect("hash"));
    for args in [
        vec!["chain-id"],
        vec!["block-number"],
        vec!["block", "latest", "--json"],
        vec!["block", "3", "--full", "--json"],
        vec!["block", "5"],
        vec!["tx", tx_hash, "--json"],
        vec!["receipt", tx_hash, "--json"],
        vec!["logs", "--from-block", "0", "--to-block", "latest", "--address", log_addr, "--json"],
        vec!["balance", accts[1].as_str(), "--block", "2"],
        vec!["nonce", accts[0].as_str()],
        vec!["code", log_addr],
    ] {
        same_cast(&a, &us, &args);
    }

    // viem, as users run it (tests/clients/viem.cjs): the same parsed answers.
    viem(&a, &us, tx_hash, log_addr, &accts[1]);
    // web3.py too, over HTTP and a WebSocket (it mines one block for its newHeads check).
    web3py(&a, &us, tx_hash, log_addr, &accts[1]);

    // Malformed requests, filters and limits.
    let r = post(&c, &us, "{not json", &[]).await.json();
    assert_eq!(r["error"]["code"], -32700);
    let r = rpc(&c, &us, &json!([])).await.json();
    assert_eq!(r["error"]["code"], -32600);
    let r = rpc(&c, &us, &json!({"id": 1, "method": "eth_blockNumber"})).await.json();
    assert_eq!(r["error"]["code"], -32600);
    let r = rpc(&c, &us, &call("eth_newFilter", &json!([{}]))).await.json();
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("eth_getLogs")), "{r}");
    let many: Vec<Value> = (0..10_000).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"})).collect();
    let r = rpc(&c, &us, &Value::Array(many)).await;
    assert_eq!(r.json()["error"]["code"], -32600, "{}", r.text());
    // 10 MB: refused from its Content-Length with 413, or cut off while still sending.
    let req = http::Request::post(&us)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(vec![b' '; 10 << 20])))
        .expect("req");
    if let Ok(resp) = c.request(req).await {
        assert_eq!(resp.status(), 413);
    }
    same(&c, &a, &us, "eth_chainId", json!([])).await;
    let r = rpc(&c, &us, &json!({"jsonrpc": "2.0", "method": "eth_chainId"})).await;
    assert_eq!((r.status, r.body.len()), (204, 0));

    // Every call is a client_requests row, and counted in /metrics.
    let rows = |sql: &'static str| crate::helpers::scalar_i64(&bed.pool, sql);
    let mut seen = (0, 0, 0);
    for _ in 0..100 {
        seen = (
            rows("SELECT count(*) FROM client_requests WHERE source = 'store' AND outcome = 'ok' AND bytes > 0").await,
            rows("SELECT count(*) FROM client_requests WHERE source LIKE 'p%' AND method = 'eth_getBalance'").await,
            rows("SELECT count(*) FROM client_requests WHERE outcome = 'refused' AND method = 'eth_newFilter'").await,
        );
        if seen.0 > 100 && seen.1 > 0 && seen.2 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.0 > 100 && seen.1 > 0 && seen.2 == 1, "client_requests rows: {seen:?}");
    let batch = rows("SELECT max(batch_size) FROM client_requests WHERE batch_size < 10000").await;
    assert_eq!(batch, 51, "the 50-call batch and its notification");
    let m = crate::http::get(&c, &format!("{base}/metrics")).await.text();
    assert!(m.contains("blockstreamer_rpc_calls_total{") && m.contains("source=\"store\""), "metrics");

    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}

fn script(json: &str) -> blockstreamer::fault::Script {
    blockstreamer::fault::Script::from_json(json).expect("script")
}

/// The node's receipt of `hash` once it is mined: automine may answer a send before the block
/// is in, so a receipt read at once can still be null.
async fn mined_receipt(anvil: &Anvil, hash: &str) -> Value {
    for _ in 0..250 {
        let r = anvil.call("eth_getTransactionReceipt", rpc_params![hash]).await;
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{hash} not mined within 5 s");
}

fn sends(bed: &Bed) -> usize {
    (0..bed.proxies.len()).map(|i| bed.log(i).iter().filter(|c| c.method == "eth_sendRawTransaction").count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slow_or_lying_provider_never_reaches_the_client_and_a_write_is_sent_once() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(8, 3).await;
    let head = anvil.head().await;
    let mut bed = Bed::new(Truth::Anvil(anvil), 3, |c| {
        c.alerts.enabled = false;
        c.rpc.max_logs_range = 5;
        for p in &mut c.providers {
            p.timeout_ms = Some(1000);
        }
    })
    .await;
    let (api, a, base) = serve_and_sync(&mut bed, head).await;
    let Truth::Anvil(anvil) = &*bed.truth else { unreachable!("anvil bed") };
    let us = format!("{base}/rpc");
    let c = client();
    let accts = anvil.accounts().await;

    // p1 fails, p2 times out, p3 forges every block it serves.
    bed.proxies[0].set_script(script(r#"{"rules": [{"fault": {"kind": "http", "status": 500}}]}"#));
    bed.proxies[1].set_script(script(r#"{"rules": [{"fault": {"kind": "delay", "ms": 3000}}]}"#));
    bed.proxies[2].set_script(script(
        r#"{"rules": [{"methods": ["eth_getBlockByNumber", "eth_getBlockByHash"], "fault": {"kind": "mutate", "field": "stateRoot", "value": "0x00000000000000000000000000000000000000000000000000000000000000aa"}}]}"#,
    ));
    for n in 0..=head {
        let (b, src) = same(&c, &a, &us, "eth_getBlockByNumber", json!([format!("{n:#x}"), true])).await;
        assert_eq!(src, "store", "block {n}: {b}");
    }
    for i in 0..10 {
        same(&c, &a, &us, "eth_getBalance", json!([accts[i % accts.len()], format!("{:#x}", i % 8)])).await;
        same(&c, &a, &us, "eth_getTransactionCount", json!([accts[i % accts.len()], "latest"])).await;
    }

    // eth_getLogs over the whole chain, past the range limit: the node-like error, not a scan.
    let r = rpc(&c, &us, &call("eth_getLogs", &json!([{"fromBlock": "0x0", "toBlock": "latest"}]))).await.json();
    assert_eq!(r["error"]["code"], -32005, "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("max block range 5")), "{r}");
    let r = rpc(&c, &us, &call("eth_getLogs", &json!([{"fromBlock": "0x1", "toBlock": "0x5"}]))).await;
    assert_eq!(
        (
            r.json()["result"].as_array().map(Vec::len),
            r.headers.get("x-blockstreamer-source").and_then(|v| v.to_str().ok())
        ),
        (Some(0), Some("store"))
    );

    // Every provider holds writes past the timeout: the first one asked gets it, nobody else.
    let hang = r#"{"rules": [{"methods": ["eth_sendRawTransaction"], "fault": {"kind": "hang"}}]}"#;
    for p in &bed.proxies {
        p.set_script(script(hang));
        p.clear_log();
    }
    let tx = json!({"from": accts[6], "to": accts[7], "value": "0x9", "gas": "0x5208", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "nonce": "0x0", "chainId": "0x7a69"});
    let raw = anvil.call("eth_signTransaction", rpc_params![tx]).await;
    let r = rpc(&c, &us, &call("eth_sendRawTransaction", &json!([raw]))).await.json();
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert!(r["error"]["data"]["transactionHash"].as_str().is_some_and(|h| h.len() == 66), "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sends(&bed), 1, "the write reached exactly one provider");

    // A provider that refuses at once (HTTP 503: it never ran the call) is skipped; the next
    // one sends it, once, and the transaction is mined and stored.
    bed.proxies[0].set_script(script(
        r#"{"rules": [{"methods": ["eth_sendRawTransaction"], "fault": {"kind": "http", "status": 503}}]}"#,
    ));
    for p in &bed.proxies[1..] {
        p.set_script(blockstreamer::fault::Script::default());
    }
    for p in &bed.proxies {
        p.clear_log();
    }
    let tx = json!({"from": accts[8], "to": accts[7], "value": "0x9", "gas": "0x5208", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "nonce": "0x0", "chainId": "0x7a69"});
    let raw = anvil.call("eth_signTransaction", rpc_params![tx]).await;
    let r = rpc(&c, &us, &call("eth_sendRawTransaction", &json!([raw]))).await.json();
    let hash = r["result"].as_str().unwrap_or_else(|| panic!("send: {r}")).to_string();
    let accepted: usize =
        (1..3).map(|i| bed.log(i).iter().filter(|c| c.method == "eth_sendRawTransaction").count()).sum();
    assert_eq!(accepted, 1, "one provider accepted it");
    let receipt = mined_receipt(anvil, &hash).await;
    assert_eq!(receipt["status"], "0x1");

    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}
