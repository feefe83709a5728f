//! Receipts and logs against a real node: a contract (bytecode assembled by hand below) emits
//! LOG0..LOG4 on every call; every stored receipt and log equals what anvil answers, and the
//! receipts root verifies for every hardfork from Byzantium to Prague.

use std::sync::Arc;

use jsonrpsee::rpc_params;
use serde_json::Value;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use blockstreamer::app::{App, AppOptions};

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, hex_u64, init_tracing, inspect, integrity_ok, scalar_i64, temp_db};

/// `keccak256("Transfer(address,address,uint256)")`: a topic the contract emits in LOG3.
const TRANSFER: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// Runtime code: copy the calldata to memory, then LOG0(data = calldata),
/// LOG1(caller; first word), LOG2(caller, number; first word),
/// LOG3(Transfer, number, timestamp; both words), LOG4(caller, number, timestamp, callvalue).
/// `zero` is how 0 is pushed: `5f` (PUSH0, Shanghai on) or `6000` (PUSH1 0).
fn runtime(zero: &str) -> String {
    let z = zero;
    [
        format!("36{z}{z}37"),                // CALLDATACOPY(0, 0, CALLDATASIZE)
        format!("36{z}a0"),                   // LOG0(0, CALLDATASIZE)
        format!("336020{z}a1"),               // LOG1(0, 32, CALLER)
        format!("43336020{z}a2"),             // LOG2(0, 32, CALLER, NUMBER)
        format!("42437f{TRANSFER}6040{z}a3"), // LOG3(0, 64, Transfer, NUMBER, TIMESTAMP)
        format!("34424333{z}{z}a4"),          // LOG4(0, 0, CALLER, NUMBER, TIMESTAMP, CALLVALUE)
        "00".to_string(),                     // STOP
    ]
    .concat()
}

/// Init code that returns `runtime`.
fn init_code(runtime: &str) -> String {
    let len = runtime.len() / 2;
    assert!(len < 256);
    // PUSH1 len, DUP1, PUSH1 offset(11), PUSH1 0, CODECOPY, PUSH1 0, RETURN
    format!("0x60{len:02x}80600b6000396000f3{runtime}")
}

async fn deploy(anvil: &Anvil, from: &str, code: &str, legacy: bool) -> String {
    let mut tx = serde_json::json!({ "from": from, "data": code, "gas": "0x100000" });
    if legacy {
        tx["gasPrice"] = "0x77359400".into();
    }
    let hash = anvil.call("eth_sendTransaction", rpc_params![tx]).await;
    for _ in 0..100 {
        let r = anvil.call("eth_getTransactionReceipt", rpc_params![hash.clone()]).await;
        if let Some(a) = r["contractAddress"].as_str() {
            assert_eq!(r["status"], "0x1", "deployment failed: {r}");
            return a.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("contract not deployed");
}

/// `blocks` blocks of `txs` calls each (automine off, then evm_mine), each call with 64 bytes of
/// calldata that differ per call.
async fn call_many(anvil: &Anvil, contract: &str, blocks: u64, txs: usize, legacy: bool) {
    let accts = anvil.accounts().await;
    anvil.call("evm_setAutomine", rpc_params![false]).await;
    for b in 0..blocks {
        let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
        for i in 0..txs {
            let data = format!("0x{:064x}{:064x}", b * 1000 + i as u64, (b + 7) * 31 + i as u64);
            let mut tx = serde_json::json!({
                "from": accts[i % accts.len()], "to": contract, "data": data, "gas": "0x30000",
                "value": format!("{:#x}", i + 1),
            });
            if legacy {
                tx["gasPrice"] = "0x77359400".into();
            }
            batch.insert("eth_sendTransaction", rpc_params![tx]).expect("batch");
        }
        let r = jsonrpsee::core::client::ClientT::batch_request::<Value>(&anvil.client, batch).await.expect("send");
        assert_eq!(r.num_successful_calls(), txs, "all calls accepted: {r:?}");
        anvil.call("evm_mine", rpc_params![]).await;
    }
    anvil.call("evm_setAutomine", rpc_params![true]).await;
}

async fn backfill(anvil: &Anvil, to: u64) -> crate::helpers::TempDb {
    let db = temp_db();
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url], &["a", "b"]);
    config.api.enabled = false;
    config.alerts.enabled = false;
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    app.backfill(0, to, &CancellationToken::new()).await.expect("backfill");
    match Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => panic!("app still shared"),
    }
    db
}

fn u(v: i64) -> u64 {
    u64::try_from(v).expect("non-negative")
}

fn hex_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_ascii_lowercase()
}

/// Deploy the LOG0..LOG4 contract and call it `txs` times in each of `blocks` blocks.
pub async fn with_logging_calls(anvil: &Anvil, blocks: u64, txs: usize) {
    let accts = anvil.accounts().await;
    let contract = deploy(anvil, &accts[0], &init_code(&runtime("5f")), false).await;
    call_many(anvil, &contract, blocks, txs, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receipt_and_log_equals_the_nodes() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    let accts = anvil.accounts().await;
    let contract = deploy(&anvil, &accts[0], &init_code(&runtime("5f")), false).await;
    call_many(&anvil, &contract, 300, 2, false).await;
    let head = anvil.head().await;
    let db = backfill(&anvil, head).await;
    let pool = inspect(&db.path).await;
    integrity_ok(&pool).await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1 AND receipts <> 1").await, 0);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE tx_count > 0 AND receipts_verified IS NOT 1").await,
        0
    );
    let logs = scalar_i64(&pool, "SELECT count(*) FROM logs_view").await;
    let receipts = scalar_i64(&pool, "SELECT count(*) FROM receipts_view").await;
    assert_eq!(receipts, 601, "one deployment and 600 calls");
    assert_eq!(logs, 3000, "five logs per call");
    // Every log, as eth_getLogs answers for the whole range.
    let theirs = anvil
        .call("eth_getLogs", rpc_params![serde_json::json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}")})])
        .await;
    let theirs = theirs.as_array().expect("logs");
    assert_eq!(theirs.len(), 3000);
    let ours = sqlx::query(
        "SELECT block_number, block_hash, transaction_index, transaction_hash, log_index, address, topic0, topic1, topic2, topic3, data \
         FROM logs_view ORDER BY block_number, log_index",
    )
    .fetch_all(&pool)
    .await
    .expect("logs");
    for (o, t) in ours.iter().zip(theirs) {
        let topics: Vec<String> = t["topics"].as_array().expect("topics").iter().map(hex_of).collect();
        let ours_topics: Vec<String> = (6..10).filter_map(|i| o.get::<Option<String>, _>(i)).collect();
        assert_eq!(u(o.get::<i64, _>(0)), hex_u64(&t["blockNumber"]));
        assert_eq!(o.get::<String, _>(1), hex_of(&t["blockHash"]));
        assert_eq!(u(o.get::<i64, _>(2)), hex_u64(&t["transactionIndex"]));
        assert_eq!(o.get::<String, _>(3), hex_of(&t["transactionHash"]));
        assert_eq!(u(o.get::<i64, _>(4)), hex_u64(&t["logIndex"]));
        assert_eq!(o.get::<String, _>(5), hex_of(&t["address"]));
        assert_eq!(ours_topics, topics, "topics of log {}", o.get::<i64, _>(4));
        assert_eq!(o.get::<String, _>(10), hex_of(&t["data"]));
    }
    // Every receipt, as eth_getTransactionReceipt answers.
    let rows = sqlx::query(
        "SELECT transaction_hash, status, gas_used, cumulative_gas_used, effective_gas_price, contract_address, tx_type, log_count \
         FROM receipts_view ORDER BY block_number, transaction_index",
    )
    .fetch_all(&pool)
    .await
    .expect("receipts");
    for r in &rows {
        let hash: String = r.get(0);
        let t = anvil.call("eth_getTransactionReceipt", rpc_params![hash.clone()]).await;
        assert_eq!(u(r.get::<i64, _>(1)), hex_u64(&t["status"]), "{hash}");
        assert_eq!(u(r.get::<i64, _>(2)), hex_u64(&t["gasUsed"]));
        assert_eq!(u(r.get::<i64, _>(3)), hex_u64(&t["cumulativeGasUsed"]));
        assert_eq!(u(r.get::<i64, _>(4)), hex_u64(&t["effectiveGasPrice"]));
        assert_eq!(r.get::<Option<String>, _>(5), t["contractAddress"].as_str().map(str::to_ascii_lowercase));
        assert_eq!(u(r.get::<i64, _>(6)), hex_u64(&t["type"]));
        assert_eq!(usize::try_from(r.get::<i64, _>(7)).expect("count"), t["logs"].as_array().map_or(0, Vec::len));
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipts_root_verifies_on_every_hardfork_from_byzantium_to_prague() {
    init_tracing();
    for fork in [
        "byzantium",
        "constantinople",
        "petersburg",
        "istanbul",
        "berlin",
        "london",
        "paris",
        "shanghai",
        "cancun",
        "prague",
    ] {
        let anvil = Anvil::start(&["--hardfork", fork]).await;
        let legacy = matches!(fork, "byzantium" | "constantinople" | "petersburg" | "istanbul" | "berlin");
        let push0 = matches!(fork, "shanghai" | "cancun" | "prague");
        let code = runtime(if push0 { "5f" } else { "6000" });
        let accts = anvil.accounts().await;
        let contract = deploy(&anvil, &accts[0], &init_code(&code), legacy).await;
        call_many(&anvil, &contract, 5, 3, legacy).await;
        let head = anvil.head().await;
        let db = backfill(&anvil, head).await;
        let pool = inspect(&db.path).await;
        let unverified =
            scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE tx_count > 0 AND receipts_verified IS NOT 1").await;
        assert_eq!(unverified, 0, "{fork}: receipts roots not verified");
        assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM logs_view").await, 75, "{fork}: 15 calls × 5 logs");
        pool.close().await;
    }
}

/// Receipts switched on after a backfill without them: every stored block without its receipts
/// is a `receipts` gap; the repair worker fills them (logged in `gap_repairs`), and the result
/// equals what a backfill with receipts stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_switched_on_later_are_repaired_as_gaps() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    with_logging_calls(&anvil, 120, 2).await;
    let head = anvil.head().await;
    let db = temp_db();
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url], &["a", "b"]);
    config.api.enabled = false;
    config.alerts.enabled = false;
    config.index.receipts = Some(false);
    let app =
        App::start(AppOptions { db: db.path.clone(), config: config.clone(), progress: false }).await.expect("start");
    app.backfill(0, head, &CancellationToken::new()).await.expect("backfill");
    app.shutdown().await;
    let pool = inspect(&db.path).await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM logs").await, 0, "receipts off: no logs");
    let waiting = scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1 AND tx_count > 0").await;
    assert_eq!(waiting, 121, "one deployment block and 120 call blocks");

    config.index.receipts = Some(true);
    let app = App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("restart");
    let scan = app.store.scan_gaps().await.expect("scan");
    let listed: u64 = scan.missing_receipts.iter().map(|(a, b)| b - a + 1).sum();
    assert_eq!(listed, 121, "every block with transactions is a receipts gap: {:?}", scan.missing_receipts);
    app.start_head_poller();
    app.start_gap_repair();
    let began = std::time::Instant::now();
    loop {
        let left =
            scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 1 AND tx_count > 0 AND receipts <> 1")
                .await;
        if left == 0 {
            break;
        }
        assert!(began.elapsed() < std::time::Duration::from_secs(60), "{left} blocks still without receipts");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.shutdown().await;
    integrity_ok(&pool).await;
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM logs_view").await, 1200, "five logs per call");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM receipts_view").await, 241);
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE tx_count > 0 AND receipts_verified IS NOT 1").await,
        0
    );
    let repaired = scalar_i64(
        &pool,
        "SELECT coalesce(sum(blocks), 0) FROM gap_repairs WHERE reason = 'receipts' AND outcome = 'repaired'",
    )
    .await;
    assert_eq!(repaired, 121, "every repair logged under reason receipts");
    let theirs = anvil
        .call("eth_getLogs", rpc_params![serde_json::json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}")})])
        .await;
    assert_eq!(theirs.as_array().map_or(0, Vec::len), 1200);
    pool.close().await;
}
