//! the fault matrix (docs/testing.md): validation of content (VAL-01..03). One malformed answer per case from
//! p1; the block must be refused whole, classified, and stored from p2 exactly as the truth.

use std::time::Duration;

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::Strategy;
use blockstreamer::fault::{Fault, FaultProxy, Rule, Script};
use blockstreamer::sim::{self, SimProviderOptions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::anvil_backfill::config_for;
use crate::bed::{Bed, Truth, sim_chain};
use crate::helpers::{Anvil, init_tracing, inspect, scalar_i64, temp_db};

fn mutate(field: &str, value: Value) -> Fault {
    Fault::Mutate { field: field.into(), value }
}

fn remove(field: &str) -> Fault {
    Fault::Remove { field: field.into() }
}

/// (name, fault, telemetry outcome expected for p1's answer, hash_verified expected when stored)
fn cases(h: u64) -> Vec<(&'static str, Fault, &'static str, i64)> {
    vec![
        // envelope
        ("wrong id", Fault::WrongId, "invalid_response", 1),
        ("id as a string", Fault::IdAsString, "invalid_response", 1),
        ("null id", Fault::Envelope { field: "id".into(), value: Some(Value::Null) }, "invalid_response", 1),
        ("no id", Fault::Envelope { field: "id".into(), value: None }, "invalid_response", 1),
        // jsonrpsee tolerates a missing `jsonrpc` member; the payload is still validated whole
        // (hash recomputed), so the block stored is the true one: documented, accepted.
        ("no jsonrpc field", Fault::Envelope { field: "jsonrpc".into(), value: None }, "ok", 1),
        ("jsonrpc 1.0", Fault::Envelope { field: "jsonrpc".into(), value: Some(json!("1.0")) }, "invalid_response", 1),
        (
            "both result and error",
            Fault::Envelope { field: "error".into(), value: Some(json!({"code": -32000, "message": "x"})) },
            "invalid_response",
            1,
        ),
        ("neither result nor error", Fault::Envelope { field: "result".into(), value: None }, "invalid_response", 1),
        ("byte-order mark", Fault::Bom, "invalid_response", 1),
        ("invalid UTF-8", Fault::InvalidUtf8, "invalid_response", 1),
        ("duplicate key", Fault::DuplicateKey { field: "number".into(), value: json!("0x1") }, "invalid_response", 1),
        // 100,000 levels inside an unknown field: skipped without recursion (no stack overflow),
        // and, being an unknown header field, the block is stored flagged unverified.
        ("nesting 100,000 deep", Fault::DeepNesting { depth: 100_000 }, "ok", 0),
        ("result is a string", Fault::Result { value: json!("0x1") }, "invalid_response", 1),
        ("result is an array", Fault::Result { value: json!([1, 2]) }, "invalid_response", 1),
        ("result is a number", Fault::Result { value: json!(7) }, "invalid_response", 1),
        ("null result", Fault::NullResult, "null_result", 1),
        ("trailing garbage", Fault::TrailingGarbage, "invalid_response", 1),
        ("html page", Fault::Html, "invalid_response", 1),
        ("empty body", Fault::Empty, "invalid_response", 1),
        // required fields missing
        ("no hash", remove("hash"), "invalid_response", 1),
        ("no number", remove("number"), "invalid_response", 1),
        ("no parentHash", remove("parentHash"), "invalid_response", 1),
        ("no timestamp", remove("timestamp"), "invalid_response", 1),
        ("no transactions", remove("transactions"), "invalid_response", 1),
        ("no logsBloom", remove("logsBloom"), "invalid_response", 1),
        // wrong types and bad quantities
        ("number as JSON number", mutate("number", json!(10)), "invalid_response", 1),
        ("timestamp as decimal string", mutate("timestamp", json!("1700000000")), "invalid_response", 1),
        ("number as boolean", mutate("number", json!(true)), "invalid_response", 1),
        ("number without 0x", mutate("number", json!("a")), "invalid_response", 1),
        ("number empty 0x", mutate("number", json!("0x")), "invalid_response", 1),
        ("negative number", mutate("number", json!("-0xa")), "invalid_response", 1),
        ("number above i64", mutate("number", json!("0xffffffffffffffff")), "invalid_response", 1),
        // leading zeros and upper case name the same height: accepted, documented
        ("number with leading zeros", mutate("number", json!(format!("0x000{h:x}"))), "ok", 1),
        ("number in upper case", mutate("number", json!(format!("0x{h:X}"))), "ok", 1),
        ("extraData of odd length", mutate("extraData", json!("0xabc")), "invalid_response", 1),
        ("hash of 31 bytes", mutate("hash", json!(format!("0x{}", "ab".repeat(31)))), "invalid_response", 1),
        ("hash of 33 bytes", mutate("hash", json!(format!("0x{}", "ab".repeat(33)))), "invalid_response", 1),
        (
            "logsBloom of 255 bytes",
            mutate("logsBloom", json!(format!("0x{}", "00".repeat(255)))),
            "invalid_response",
            1,
        ),
        // identity
        ("block of another height", Fault::WrongHeight { offset: 1 }, "invalid_response", 1),
        // transactions inconsistent with the block
        (
            "tx blockHash",
            mutate("/transactions/0/blockHash", json!(format!("0x{}", "11".repeat(32)))),
            "invalid_response",
            1,
        ),
        ("tx blockNumber", mutate("/transactions/0/blockNumber", json!("0x1")), "invalid_response", 1),
        ("tx index gap", mutate("/transactions/1/transactionIndex", json!("0x5")), "invalid_response", 1),
        ("tx missing", remove("/transactions/0"), "invalid_response", 1),
        // VAL-03: header hash
        (
            "stateRoot changed, hash kept",
            mutate("stateRoot", json!(format!("0x{}", "22".repeat(32)))),
            "invalid_response",
            1,
        ),
        ("random hash", Fault::ForgedHash, "invalid_response", 1),
        ("unknown header field", mutate("fooRoot", json!(format!("0x{}", "33".repeat(32)))), "ok", 0),
    ]
}

/// VAL-01 + VAL-03 on the simulated chain, each case in a fresh database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn val01_val03_malformed_response_matrix() {
    init_tracing();
    let chain = sim_chain(40, 11);
    // A height with at least two transactions, below the tip (so no hedging muddies the count).
    let h = (10..30).find(|n| chain.block(*n).is_some_and(|b| b.tx_count >= 2)).expect("a block with 2+ txs");
    let truth = format!("{:#x}", chain.block(h).expect("block").hash);
    let s1 = sim::serve(chain.clone(), SimProviderOptions { name: "s1".into(), lag: 0 }).await.expect("serve");
    let s2 = sim::serve(chain.clone(), SimProviderOptions { name: "s2".into(), lag: 0 }).await.expect("serve");
    let addr = "127.0.0.1:0".parse().expect("addr");
    let p1 = FaultProxy::start(&s1.url(), addr, Script::default()).await.expect("proxy");
    let p2 = FaultProxy::start(&s2.url(), addr, Script::default()).await.expect("proxy");
    let mut failures = Vec::new();
    for (name, fault, want, verified) in cases(h) {
        p1.set_script(Script::single(
            Rule::always(name, fault).methods(&["eth_getBlockByNumber"]).heights(h, h).count(1),
        ));
        let db = temp_db();
        let mut config = config_for(&[p1.url(), p2.url()], &["p1", "p2"]);
        config.routing.strategy = Strategy::Priority;
        let app = App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start");
        let cancel = CancellationToken::new();
        let r = app.backfill(h, h, &cancel).await;
        app.shutdown().await;
        if let Err(e) = r {
            failures.push(format!("{name}: backfill failed: {e}"));
            continue;
        }
        let pool = inspect(&db.path).await;
        let stored: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT hash, hash_verified FROM canonical_blocks WHERE number = ?1")
                .bind(i64::try_from(h).expect("i64"))
                .fetch_all(&pool)
                .await
                .expect("stored");
        let bad = scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 0").await;
        let outcome: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM provider_requests_view WHERE provider = 'p1' AND block_number = ?1 ORDER BY id LIMIT 1",
        )
        .bind(i64::try_from(h).expect("i64"))
        .fetch_optional(&pool)
        .await
        .expect("outcome");
        let drew = p1.log().iter().any(|c| c.fault.as_deref().is_some_and(|f| f.starts_with(name)));
        if !drew {
            failures.push(format!("{name}: the fault was never drawn"));
        }
        if stored != [(truth.clone(), Some(verified))] {
            failures.push(format!("{name}: stored {stored:?}, want [({truth}, Some({verified}))]"));
        }
        if bad != 0 {
            failures.push(format!("{name}: {bad} stray rows"));
        }
        if outcome.as_deref() != Some(want) {
            failures.push(format!("{name}: p1 outcome {outcome:?}, want {want}"));
        }
        pool.close().await;
        p1.clear_log();
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases(h).len(), failures.join("\n"));
}

/// VAL-02 (anvil behind proxies): a provider serving the wrong height is refused and excluded
/// after at most three identity failures; a provider on another chain is never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn val02_wrong_block_identity_and_chain() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(20, 2).await;
    let mut bed = Bed::new(Truth::Anvil(anvil), 4, |c| c.routing.strategy = Strategy::Priority).await;
    bed.proxies[0].set_script(Script {
        seed: 1,
        rules: vec![
            Rule::always("up", Fault::WrongHeight { offset: 1 }).methods(&["eth_getBlockByNumber"]).heights(0, 10),
            Rule::always("down", Fault::WrongHeight { offset: -1 })
                .methods(&["eth_getBlockByNumber"])
                .heights(11, 1000),
        ],
    });
    bed.proxies[3].set_script(Script::single(
        Rule::always("other-chain", Fault::Result { value: json!("0x89") }).methods(&["eth_chainId"]),
    ));
    bed.follow(0);
    bed.run_chain(Duration::from_millis(200), Duration::from_secs(4)).await;
    bed.settle(Duration::from_secs(10)).await;
    let identity = bed
        .log(0)
        .iter()
        .filter(|c| c.fault.is_some() && c.method == "eth_getBlockByNumber" && c.height.is_some())
        .count();
    let opened = scalar_i64(
        &bed.pool,
        "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'breaker_open' AND reason LIKE '%forged or inconsistent%'",
    )
    .await;
    assert!(opened >= 1, "p1 excluded for serving wrong blocks");
    // Blocks are fetched in batches, so one failed attempt can carry several wrong heights;
    // what must hold is that p1 was cut off after at most three failed attempts.
    let before_open = scalar_i64(
        &bed.pool,
        "SELECT count(*) FROM provider_events_view WHERE provider = 'p1' AND kind = 'integrity_penalty'
           AND id < (SELECT min(id) FROM provider_events_view WHERE provider = 'p1' AND kind = 'breaker_open')",
    )
    .await;
    assert!(before_open <= 3, "p1 failed {before_open} identity checks ({identity} wrong blocks) before exclusion");
    let wrong_chain = bed.log(3).iter().filter(|c| c.method != "eth_chainId").count();
    assert_eq!(wrong_chain, 0, "the provider on another chain was used");
    let ev = scalar_i64(
        &bed.pool,
        "SELECT count(*) FROM provider_events_view WHERE provider = 'p4' AND kind = 'wrong_chain'",
    )
    .await;
    assert_eq!(ev, 1, "wrong chain recorded once");
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}
