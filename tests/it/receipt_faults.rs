//! Receipts through the fault proxy, against anvil: a dropped log, a forged log, a truncated
//! receipts list, and a provider without `eth_getBlockReceipts`. The stored receipts and logs
//! still equal the node's, and each fault shows in telemetry and provider events.

use std::time::Duration;

use blockstreamer::fault::{Fault, Rule, Script};
use jsonrpsee::rpc_params;
use serde_json::json;

use crate::bed::{Bed, Truth};
use crate::helpers::{Anvil, init_tracing, scalar_i64};

/// An anvil with the LOG0..LOG4 contract called in 40 blocks (2 calls each: 10 logs a block).
async fn chain() -> Anvil {
    let anvil = Anvil::start(&[]).await;
    crate::anvil_logs::with_logging_calls(&anvil, 40, 2).await;
    anvil
}

/// Backfill through p1 (faulty, tried first) and p2 (clean); return the bed for inspection.
async fn run(script: Script) -> Bed {
    let anvil = chain().await;
    let head = anvil.head().await;
    let bed = Bed::new(Truth::Anvil(anvil), 2, |c| {
        c.routing.strategy = blockstreamer::config::Strategy::Priority;
        c.batch_size = 4;
        // the faults must not open p1's breaker for good: it keeps being asked first
        c.routing.breaker_failures = 1000;
        c.routing.integrity_memory_secs = 1;
    })
    .await;
    bed.proxies[0].set_script(script);
    bed.app.backfill(0, head, &tokio_util::sync::CancellationToken::new()).await.expect("backfill");
    tokio::time::sleep(Duration::from_millis(400)).await;
    bed
}

/// The stored logs equal the node's (count and content), every block has its receipts.
async fn equals_the_node(bed: &Bed) {
    let Truth::Anvil(anvil) = bed.truth.as_ref() else { panic!("anvil") };
    let head = anvil.head().await;
    let theirs =
        anvil.call("eth_getLogs", rpc_params![json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}")})]).await;
    let theirs: Vec<(String, String, String)> = theirs
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| (l["transactionHash"].to_string(), l["logIndex"].to_string(), l["data"].to_string()))
        .collect();
    let ours: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT transaction_hash, log_index, data FROM logs_view ORDER BY block_number, log_index")
            .fetch_all(&bed.pool)
            .await
            .expect("logs");
    assert_eq!(ours.len(), theirs.len(), "log count");
    for ((th, li, d), (h, i, data)) in ours.iter().zip(&theirs) {
        assert_eq!(format!("\"{th}\""), *h);
        assert_eq!(format!("\"{li:#x}\""), *i);
        assert_eq!(format!("\"{d}\""), *data);
    }
    let missing =
        scalar_i64(&bed.pool, "SELECT count(*) FROM blocks WHERE canonical = 1 AND tx_count > 0 AND receipts <> 1")
            .await;
    assert_eq!(missing, 0, "blocks without receipts");
}

async fn p1_count(bed: &Bed, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&bed.pool).await.expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_dropped_and_truncated_receipts_are_refused_and_fetched_elsewhere() {
    init_tracing();
    let receipts = &["eth_getBlockReceipts"];
    let cases = [
        ("dropped log", Fault::Remove { field: "/0/logs/1".into() }),
        ("forged log", Fault::Mutate { field: "/1/logs/2/data".into(), value: json!("0x00") }),
        ("truncated list", Fault::Remove { field: "/1".into() }),
        ("wrong block", Fault::Mutate { field: "/0/blockNumber".into(), value: json!("0x7777") }),
    ];
    for (name, fault) in cases {
        // Blocks 2.. hold two calls each, so every pointer names something.
        let rule = Rule::always(name, fault).methods(receipts).heights(2, u64::MAX).count(6);
        let bed = run(Script::single(rule)).await;
        equals_the_node(&bed).await;
        let refused = p1_count(
            &bed,
            "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND method = 'eth_getBlockReceipts' AND outcome = 'invalid_response'",
        )
        .await;
        let drawn = bed.proxies[0].log().iter().filter(|c| c.fault.is_some()).count();
        assert!(drawn > 0, "{name}: the fault was never drawn");
        assert_eq!(usize::try_from(refused).unwrap_or(0), drawn, "{name}: every faulty answer refused and counted");
        let penalties = p1_count(
            &bed,
            "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'integrity_penalty'",
        )
        .await;
        assert!(penalties >= 1, "{name}: no integrity penalty recorded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_block_receipts_is_asked_per_transaction() {
    init_tracing();
    let missing = Fault::RpcError {
        code: -32601,
        message: "the method eth_getBlockReceipts does not exist/is not available".into(),
        data: None,
    };
    let bed = run(Script::single(Rule::always("no-block-receipts", missing).methods(&["eth_getBlockReceipts"]))).await;
    equals_the_node(&bed).await;
    let learned =
        p1_count(&bed, "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'capability'").await;
    assert_eq!(learned, 1, "learned once");
    let asked_once = p1_count(
        &bed,
        "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND method = 'eth_getBlockReceipts'",
    )
    .await;
    // The batches in flight when it answered (concurrency 6 × 4 blocks) at most; none after.
    assert!(asked_once <= 24, "asked {asked_once} times");
    let per_tx = p1_count(
        &bed,
        "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND method = 'eth_getTransactionReceipt' AND outcome = 'ok'",
    )
    .await;
    assert!(per_tx >= 70, "p1 served the receipts per transaction ({per_tx})");
    let caps = bed.app.fleet.provider(blockstreamer::model::ProviderId(0)).map(|p| p.capabilities());
    assert_eq!(caps.map(|c| c.block_receipts), Some(blockstreamer::provider::Support::No));
    // Stored, and shown with the provider.
    let row: (i64, String) = sqlx::query_as(
        "SELECT supported, detail FROM provider_capabilities_view WHERE provider = 'p1' AND method = 'eth_getBlockReceipts'",
    )
    .fetch_one(&bed.pool)
    .await
    .expect("stored capability");
    assert_eq!(row.0, 0, "{}", row.1);
    assert!(row.1.contains("-32601"), "the reason is kept: {}", row.1);
    let (_api, base) = bed.serve_api().await;
    let doc = crate::http::get(&crate::http::client(), &format!("{base}/v1/providers/p1")).await.json();
    assert_eq!(doc["capabilities"]["live"]["eth_getBlockReceipts"], "no", "{doc}");
    assert_eq!(doc["capabilities"]["learned"][0]["method"], "eth_getBlockReceipts", "{doc}");
    assert_eq!(doc["capabilities"]["learned"][0]["supported"], false, "{doc}");
    // The next run starts from what this one learned.
    let again = blockstreamer::app::App::start(blockstreamer::app::AppOptions {
        db: bed._db.path.clone(),
        config: bed.app.config().clone(),
        progress: false,
    })
    .await
    .expect("restart");
    let caps = again.fleet.provider(blockstreamer::model::ProviderId(0)).map(|p| p.capabilities());
    assert_eq!(caps.map(|c| c.block_receipts), Some(blockstreamer::provider::Support::No), "known at start");
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_checks_catch_a_provider_that_serves_nothing() {
    init_tracing();
    let anvil = chain().await;
    let head = anvil.head().await;
    let bed = Bed::new(Truth::Anvil(anvil), 2, |c| {
        c.routing.strategy = blockstreamer::config::Strategy::Priority;
        c.index.audit_secs = 1;
    })
    .await;
    // p2 is never routed to (p1 comes first and is healthy), and forges every receipt list.
    let forged = Fault::Mutate { field: "/0/logs/0/data".into(), value: json!("0x00") };
    bed.proxies[1].set_script(Script::single(Rule::always("forged", forged).methods(&["eth_getBlockReceipts"])));
    bed.app.backfill(0, head, &tokio_util::sync::CancellationToken::new()).await.expect("backfill");
    let mut refused = 0;
    for _ in 0..50 {
        refused = p1_count(
            &bed,
            "SELECT count(*) FROM provider_requests_view WHERE provider = 'p2' AND method = 'eth_getBlockReceipts' AND outcome = 'invalid_response'",
        )
        .await;
        if refused > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused, 1, "one spot check in a backfill shorter than audit_secs, refused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let penalties = p1_count(
        &bed,
        "SELECT count(*) FROM provider_events_view WHERE provider = 'p2' AND kind = 'integrity_penalty'",
    )
    .await;
    assert_eq!(penalties, 1, "the forger is penalised");
    // Nothing p2 said was stored: every block's receipts came from p1.
    equals_the_node(&bed).await;
    let mine = p1_count(&bed, "SELECT count(*) FROM provider_requests_view WHERE provider = 'p2' AND method = 'eth_getBlockByNumber' AND block_number IS NOT NULL").await;
    assert_eq!(mine, 0, "p2 served no block");
}
