//! Read scale without a broker: three `blockstreamer serve` processes read one file (WAL,
//! read-only opens) while `blockstreamer run` writes it. Each answers the HTTP API and `/rpc`
//! with what the writer just committed, under concurrent load, and the writer keeps up.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Anvil, temp_db};
use crate::http::{client, get};

/// Spawn the binary and return it with the base URL it printed.
fn spawn_api(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn blockstreamer");
    let base = crate::helpers::api_url(child.stdout.take().expect("stdout"));
    (child, base)
}

async fn rpc_head(c: &crate::http::HttpClient, base: &str) -> u64 {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []});
    let r =
        crate::http::post(c, &format!("{base}/rpc"), body.to_string(), &[("content-type", "application/json")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    crate::helpers::hex_u64(&r.json()["result"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_serve_processes_read_the_file_run_writes() {
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(30, 3).await;
    let db = temp_db();
    let path = db.path.display().to_string();
    let (mut writer, run_base) =
        spawn_api(&["run", "--listen", "127.0.0.1:0", "--rpc", &anvil.url(), "--db", &path, "--from-block", "0"]);
    let c = client();
    // The file exists and holds the chain so far before the readers open it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&c, &format!("{run_base}/v1/blocks/latest")).await.json()["number"].as_u64() < Some(30) {
        assert!(Instant::now() < deadline, "run caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(spawn_api(&["serve", "--listen", "127.0.0.1:0", "--db", &path]));
    }
    // Keep the chain moving while the readers are read.
    let stop = CancellationToken::new();
    let miner = {
        let client = anvil.client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            use jsonrpsee::core::client::ClientT;
            while !stop.is_cancelled() {
                let _ = client.request::<Value, _>("anvil_mine", jsonrpsee::rpc_params!["0x1"]).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Concurrent load on every reader: blocks by number over HTTP and over /rpc.
    let mut load = Vec::new();
    for (_, base) in &readers {
        for k in 0..4u64 {
            let (c, base) = (c.clone(), base.clone());
            load.push(tokio::spawn(async move {
                for i in 0..50u64 {
                    let n = (i * 7 + k) % 30;
                    let r = get(&c, &format!("{base}/v1/blocks/{n}")).await;
                    assert_eq!(r.status, 200, "{}", r.text());
                    let body = json!({"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [format!("{n:#x}"), false]});
                    let r = crate::http::post(&c, &format!("{base}/rpc"), body.to_string(), &[("content-type", "application/json")]).await;
                    assert_eq!(r.json()["result"]["number"].as_str(), Some(format!("{n:#x}").as_str()), "{}", r.text());
                }
            }));
        }
    }
    for l in load {
        l.await.expect("load task");
    }
    // Each reader sees what the writer commits next, and answers it as the node would.
    let start = rpc_head(&c, &readers[0].1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for (_, base) in &readers {
        loop {
            let h = rpc_head(&c, base).await;
            if h >= start + 5 {
                let ours = get(&c, &format!("{base}/v1/blocks/{h}")).await.json();
                let node = anvil.block(h, false).await;
                assert_eq!(ours["hash"].as_str(), node["hash"].as_str(), "reader's block {h} is the node's");
                break;
            }
            assert!(Instant::now() < deadline, "{base} saw new commits (at {h}, started {start})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.cancel();
    let _ = miner.await;
    // The writer kept up while read: within a couple of blocks of the node.
    let head = anvil.head().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&c, &format!("{run_base}/v1/blocks/latest")).await.json()["number"].as_u64() < Some(head) {
        assert!(Instant::now() < deadline, "run reached the node's head {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (mut r, _) in readers {
        let _ = r.kill();
        let _ = r.wait();
    }
    let _ = writer.kill();
    let _ = writer.wait();
}
