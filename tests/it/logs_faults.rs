//! Logs by filter (no receipts) through the fault proxy, against anvil: range refusals with and
//! without a suggested range, a forged log, an empty `eth_getLogs` at the head and a dropped
//! log. The stored logs and decoded events still equal the node's, and each fault shows in
//! telemetry, provider events or the learned capabilities.

use std::time::Duration;

use blockstreamer::config::LogFilterConfig;
use blockstreamer::fault::{Fault, Rule, Script};
use jsonrpsee::rpc_params;
use serde_json::json;

use crate::bed::{Bed, Truth};
use crate::decoded::{contract, emit_chain};
use crate::helpers::{Anvil, hex_u64, init_tracing, integrity_ok, scalar_i64};

const BLOCKS: u64 = 40;
const TRANSFER: &str = "Transfer(address,address,uint256)";
const NOTE: &str = "Note(string,bytes32,string,int256,uint256[])";

/// What a run selects: the emitter's logs with these topic0s, and whether its contract (both
/// events) is decoded; the backfill's batch size.
struct Select {
    topics: &'static [&'static str],
    decode: bool,
    batch: usize,
}

const BOTH: Select = Select { topics: &[TRANSFER, NOTE], decode: true, batch: 4 };

/// An anvil with the emitter's logs in `BLOCKS` blocks; backfilled through p1 (faulty, tried
/// first) and p2 (clean) with logs by filter only.
async fn run(p1: Script, p2: Script, sel: &Select) -> (Bed, String) {
    let anvil = Anvil::start(&[]).await;
    let (emitter, _) = emit_chain(&anvil, BLOCKS).await;
    let head = anvil.head().await;
    let filter = |topic: &str| LogFilterConfig {
        address: vec![emitter.clone()],
        topic0: vec![topic.into()],
        ..LogFilterConfig::default()
    };
    let bed = Bed::new(Truth::Anvil(anvil), 2, |c| {
        c.routing.strategy = blockstreamer::config::Strategy::Priority;
        c.batch_size = sel.batch;
        c.routing.breaker_failures = 1000;
        c.routing.integrity_memory_secs = 1;
        c.index.receipts = Some(false);
        c.index.logs = sel.topics.iter().map(|t| filter(t)).collect();
        c.index.logs_range = 50;
        if sel.decode {
            c.index.contracts = vec![contract(&emitter)];
        }
    })
    .await;
    bed.proxies[0].set_script(p1);
    bed.proxies[1].set_script(p2);
    bed.app.backfill(0, head, &tokio_util::sync::CancellationToken::new()).await.expect("backfill");
    tokio::time::sleep(Duration::from_millis(400)).await;
    (bed, emitter)
}

/// The stored logs equal the node's selected logs of the emitter, and (when decoding) so do the
/// decoded transfers.
async fn equals_the_node(bed: &Bed, emitter: &str, sel: &Select) {
    let Truth::Anvil(anvil) = bed.truth.as_ref() else { panic!("anvil") };
    let head = anvil.head().await;
    let topics: Vec<String> = sel.topics.iter().map(|t| alloy_primitives::keccak256(t).to_string()).collect();
    let filter = json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter, "topics": [topics]});
    let theirs = anvil.call("eth_getLogs", rpc_params![filter]).await;
    let theirs: Vec<(u64, u64, String)> = theirs
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| (hex_u64(&l["blockNumber"]), hex_u64(&l["logIndex"]), l["data"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(theirs.len() >= usize::try_from(BLOCKS / 3).unwrap_or(0), "the node has the logs");
    let ours: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT block_number, log_index, data FROM logs_view ORDER BY block_number, log_index")
            .fetch_all(&bed.pool)
            .await
            .expect("logs");
    let ours: Vec<(u64, u64, String)> =
        ours.into_iter().map(|(b, i, d)| (u64::try_from(b).unwrap_or(0), u64::try_from(i).unwrap_or(0), d)).collect();
    assert_eq!(ours.len(), theirs.len(), "log count");
    assert_eq!(ours, theirs, "logs");
    if sel.decode {
        let transfers = theirs.len() - scalar_u(bed, "SELECT count(*) FROM evt_tok_note").await;
        assert_eq!(scalar_u(bed, "SELECT count(*) FROM evt_tok_transfer_view").await, transfers - bad_transfers());
    }
    assert_eq!(scalar_i64(&bed.pool, "SELECT count(*) FROM blocks WHERE tx_count > 0 AND receipts <> 2").await, 0);
    integrity_ok(&bed.pool).await;
}

/// emit_chain writes one malformed transfer every 10 blocks (a decode error, not a row).
fn bad_transfers() -> usize {
    usize::try_from(BLOCKS.div_ceil(10)).unwrap_or(0)
}

async fn scalar_u(bed: &Bed, sql: &'static str) -> usize {
    usize::try_from(scalar_i64(&bed.pool, sql).await).unwrap_or(usize::MAX)
}

async fn p1(bed: &Bed, sql: &'static str) -> i64 {
    scalar_i64(&bed.pool, sql).await
}

fn logs_rule(name: &str, fault: Fault) -> Rule {
    Rule::always(name, fault).methods(&["eth_getLogs"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_refusals_are_split_by_themselves_and_the_result_is_complete() {
    init_tracing();
    // p1 says which range works (Alchemy's style), p2 only that the range is too wide.
    let hinted = Fault::MaxRange {
        blocks: 8,
        code: -32602,
        message: "Log response size exceeded. You can make eth_getLogs requests with up to a 8 block range. Based on your parameters, this block range should work: {range}".into(),
    };
    let bare = Fault::MaxRange { blocks: 5, code: -32005, message: "query returned more than 10000 results".into() };
    let wide = Select { batch: 40, ..BOTH };
    let (bed, emitter) =
        run(Script::single(logs_rule("hinted", hinted)), Script::single(logs_rule("bare", bare)), &wide).await;
    equals_the_node(&bed, &emitter, &wide).await;
    let learned: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT provider, max_block_range FROM provider_capabilities_view WHERE method = 'eth_getLogs' ORDER BY provider",
    )
    .fetch_all(&bed.pool)
    .await
    .expect("capabilities");
    assert_eq!(learned.first(), Some(&("p1".to_string(), Some(8))), "p1 took the hint: {learned:?}");
    // p2 was asked only if p1 was busy; when it was, halving from 50 lands at or under 5.
    if let Some((_, range)) = learned.get(1) {
        assert!(range.is_some_and(|r| r <= 5), "p2 halved: {learned:?}");
    }
    // Each refusal is in the telemetry as the error it was, not as a throttle; once learned,
    // p1 is asked only in ranges it accepts (at most the calls in flight were refused).
    let refused = p1(
        &bed,
        "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND method = 'eth_getLogs' AND outcome = 'rpc_error'",
    )
    .await;
    assert!((1..=4).contains(&refused), "p1 refused {refused} calls");
    let throttled = p1(&bed, "SELECT count(*) FROM provider_requests_view WHERE outcome = 'rate_limited'").await;
    assert_eq!(throttled, 0, "a range refusal is no throttle");
    // Not the provider's fault: no penalty, and p1 kept serving.
    assert_eq!(p1(&bed, "SELECT count(*) FROM provider_events_view WHERE kind = 'integrity_penalty'").await, 0);
    assert!(
        p1(&bed, "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'capability'").await >= 1
    );
    let served = p1(
        &bed,
        "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND method = 'eth_getLogs' AND outcome = 'ok'",
    )
    .await;
    assert!(served >= i64::try_from(BLOCKS / 8).unwrap_or(0), "p1 served in 8-block ranges ({served})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_log_is_refused_penalised_and_fetched_elsewhere() {
    init_tracing();
    let cases = [
        ("forged topic", Fault::Mutate { field: "/0/topics/1".into(), value: json!(format!("0x{}", "ab".repeat(32))) }),
        (
            "forged address",
            Fault::Mutate { field: "/1/address".into(), value: json!(format!("0x{}", "cd".repeat(20))) },
        ),
        ("forged block", Fault::Mutate { field: "/0/transactionIndex".into(), value: json!("0x63") }),
    ];
    for (name, fault) in cases {
        let (bed, emitter) = run(Script::single(logs_rule(name, fault).count(4)), Script::default(), &BOTH).await;
        equals_the_node(&bed, &emitter, &BOTH).await;
        let refused = p1(
            &bed,
            "SELECT count(*) FROM provider_requests_view WHERE provider = 'p1' AND method = 'eth_getLogs' AND outcome = 'invalid_response'",
        )
        .await;
        let drawn = bed.proxies[0].log().iter().filter(|c| c.fault.is_some()).count();
        assert!(drawn > 0, "{name}: the fault was never drawn");
        assert_eq!(usize::try_from(refused).unwrap_or(0), drawn, "{name}: every forged answer refused");
        let penalties =
            p1(&bed, "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'integrity_penalty'")
                .await;
        assert!(penalties >= 1, "{name}: penalised");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_logs_at_the_head_and_a_dropped_log_are_decided_by_verified_receipts() {
    init_tracing();
    // The last heights answered "no logs" (go-ethereum #26098); and the first note of a range
    // dropped (notes come one per block, so the block's bloom gives it away).
    let notes = Select { topics: &[NOTE], decode: false, batch: 4 };
    let cases = [
        ("empty at the head", Fault::Result { value: json!([]) }, Some(BLOCKS - 6), &BOTH),
        ("dropped note", Fault::Remove { field: "/0".into() }, None, &notes),
    ];
    for (name, fault, from, sel) in cases {
        let mut rule = logs_rule(name, fault);
        rule = match from {
            Some(h) => rule.heights(h, u64::MAX),
            None => rule.count(3),
        };
        let (bed, emitter) = run(Script::single(rule), Script::default(), sel).await;
        equals_the_node(&bed, &emitter, sel).await;
        let drawn = bed.proxies[0].log().iter().filter(|c| c.fault.is_some()).count();
        assert!(drawn > 0, "{name}: the fault was never drawn");
        let penalties =
            p1(&bed, "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'integrity_penalty'")
                .await;
        assert!(penalties >= 1, "{name}: the withholding provider is penalised");
        let detail: String = sqlx::query_scalar(
            "SELECT reason FROM provider_events_view WHERE provider = 'p1' AND kind = 'integrity_penalty' LIMIT 1",
        )
        .fetch_one(&bed.pool)
        .await
        .expect("event");
        assert!(detail.contains("receipts"), "{name}: the event says why: {detail}");
        // The receipts that decided came from p2 and were verified there.
        let second = p1(
            &bed,
            "SELECT count(*) FROM provider_requests_view WHERE provider = 'p2' AND method IN ('eth_getBlockReceipts', 'eth_getTransactionReceipt') AND outcome = 'ok'",
        )
        .await;
        assert!(second >= 1, "{name}: a second opinion was asked");
    }
}
