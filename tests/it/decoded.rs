//! Decoded events and filtered logs against a real node. An "emitter" contract (bytecode
//! assembled below) turns its calldata into one LOG3: topics from the first three words, data
//! from the rest, so the test can emit any event — ERC-20 transfers with values on both sides of
//! 2^63, and an event with an indexed string and dynamic data — and a few malformed ones.
//! Every decoded row equals the node's log decoded independently; `ORDER BY` and `WHERE` on a
//! uint256 column give the numeric answer; malformed logs are counted as decode errors; without
//! receipts only the selected logs are kept (fetched with eth_getLogs); a contract added later
//! is decoded from the stored logs.

use std::sync::Arc;

use alloy_dyn_abi::DynSolValue;
use alloy_primitives::{Address, B256, I256, U256, hex, keccak256};
use jsonrpsee::rpc_params;
use serde_json::{Value, json};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::{Config, ContractConfig, LogFilterConfig};

use crate::anvil_backfill::config_for;
use crate::helpers::{Anvil, TempDb, hex_u64, init_tracing, inspect, integrity_ok, scalar_i64, temp_db};

const TRANSFER_SIG: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";
const NOTE_SIG: &str = "event Note(string indexed tag, bytes32 indexed id, string text, int256 delta, uint256[] list)";

/// Runtime: CALLDATACOPY(0, 0, size); LOG3(0x60, size - 0x60, mem[0], mem[0x20], mem[0x40]).
const EMITTER: &str = "365f5f37604051602051" /* t2, t1 */;
const EMITTER_TAIL: &str = "5f5160603603" /* t0, size */;

fn emitter_code() -> String {
    let runtime = format!("{EMITTER}{EMITTER_TAIL}6060a300");
    let len = runtime.len() / 2;
    format!("0x60{len:02x}80600b6000396000f3{runtime}")
}

fn word(a: Address) -> B256 {
    a.into_word()
}

/// One emitted log: (topics, data), and what it should decode to (None: malformed).
struct Emitted {
    topics: [B256; 3],
    data: Vec<u8>,
    transfer_value: Option<U256>,
}

fn transfer(rng: &mut fastrand::Rng) -> Emitted {
    let from = Address::from_slice(&rng.u64(..).to_be_bytes().repeat(3)[..20]);
    let to = Address::from_slice(&rng.u64(..).to_be_bytes().repeat(3)[..20]);
    // Small values, values past i64 and past 2^128, and 2^256 - 1.
    let value = match rng.u8(0..4) {
        0 => U256::from(rng.u32(..)),
        1 => U256::from(rng.u64(..)) * U256::from(1_000_000u64),
        2 => U256::from(rng.u64(..)) << 130,
        _ => U256::MAX - U256::from(rng.u8(..)),
    };
    Emitted {
        topics: [keccak256("Transfer(address,address,uint256)"), word(from), word(to)],
        data: value.to_be_bytes::<32>().to_vec(),
        transfer_value: Some(value),
    }
}

fn note(rng: &mut fastrand::Rng) -> Emitted {
    let tag = format!("tag-{}", rng.u32(..));
    let body = DynSolValue::Tuple(vec![
        DynSolValue::String(format!("text {}", rng.u32(..))),
        DynSolValue::Int(I256::try_from(rng.i64(..)).expect("i256") * I256::try_from(1_000_000i64).expect("i"), 256),
        DynSolValue::Array((0..rng.usize(0..4)).map(|k| DynSolValue::Uint(U256::from(k), 256)).collect()),
    ]);
    Emitted {
        topics: [
            keccak256("Note(string,bytes32,string,int256,uint256[])"),
            keccak256(tag.as_bytes()),
            B256::repeat_byte(rng.u8(..)),
        ],
        data: body.abi_encode_sequence().expect("encode"),
        transfer_value: None,
    }
}

/// A Transfer whose data is not one word: fails to decode.
fn malformed() -> Emitted {
    Emitted {
        topics: [keccak256("Transfer(address,address,uint256)"), B256::ZERO, B256::ZERO],
        data: vec![1, 2, 3],
        transfer_value: None,
    }
}

/// Deploy the emitter and fill `blocks` blocks with 3 logs each (mostly transfers, some notes,
/// one malformed transfer every 10 blocks). Returns the emitter's address.
pub async fn emit_chain(anvil: &Anvil, blocks: u64) -> (String, i64) {
    let accts = anvil.accounts().await;
    let hash = anvil
        .call("eth_sendTransaction", rpc_params![json!({"from": accts[0], "data": emitter_code(), "gas": "0x100000"})])
        .await;
    let mut emitter = String::new();
    for _ in 0..200 {
        let receipt = anvil.call("eth_getTransactionReceipt", rpc_params![hash.clone()]).await;
        if let Some(a) = receipt["contractAddress"].as_str() {
            emitter = a.to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!emitter.is_empty(), "emitter deployed");
    let mut rng = fastrand::Rng::with_seed(77);
    let mut bad = 0;
    anvil.call("evm_setAutomine", rpc_params![false]).await;
    for b in 0..blocks {
        let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
        for i in 0..3 {
            let e = if i == 2 && b % 10 == 0 {
                bad += 1;
                malformed()
            } else if i == 1 && b % 3 == 0 {
                note(&mut rng)
            } else {
                transfer(&mut rng)
            };
            let mut calldata = Vec::new();
            for t in e.topics {
                calldata.extend_from_slice(t.as_slice());
            }
            calldata.extend_from_slice(&e.data);
            let _ = e.transfer_value;
            let tx = json!({"from": accts[i % accts.len()], "to": emitter, "data": hex::encode_prefixed(&calldata), "gas": "0x40000"});
            batch.insert("eth_sendTransaction", rpc_params![tx]).expect("batch");
        }
        let r = jsonrpsee::core::client::ClientT::batch_request::<Value>(&anvil.client, batch).await.expect("send");
        assert_eq!(r.num_successful_calls(), 3);
        anvil.call("evm_mine", rpc_params![]).await;
    }
    anvil.call("evm_setAutomine", rpc_params![true]).await;
    (emitter, bad)
}

pub fn contract(address: &str) -> ContractConfig {
    ContractConfig {
        name: "tok".into(),
        address: vec![address.into()],
        events: vec![TRANSFER_SIG.into(), NOTE_SIG.into()],
        ..ContractConfig::default()
    }
}

async fn backfill_with(anvil: &Anvil, db: &TempDb, tune: impl FnOnce(&mut Config)) {
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url], &["a", "b"]);
    config.api.enabled = false;
    config.alerts.enabled = false;
    tune(&mut config);
    let app = Arc::new(App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start"));
    let head = anvil.head().await;
    app.backfill(0, head, &CancellationToken::new()).await.expect("backfill");
    // the decode of stored logs (a table made after its logs) runs in the background
    for _ in 0..100 {
        let pending =
            scalar_i64(&inspect(&db.path).await, "SELECT count(*) FROM event_tables WHERE backfill_cursor IS NOT NULL")
                .await;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match Arc::try_unwrap(app) {
        Ok(app) => app.shutdown().await,
        Err(_) => panic!("app still shared"),
    }
}

/// The node's Transfer logs of `emitter`, as (block, log index, from, to, value) decoded here.
async fn node_transfers(anvil: &Anvil, emitter: &str) -> Vec<(u64, u64, String, String, U256)> {
    let head = anvil.head().await;
    let topic = format!("{}", keccak256("Transfer(address,address,uint256)"));
    let logs = anvil
        .call(
            "eth_getLogs",
            rpc_params![
                json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter, "topics": [topic]})
            ],
        )
        .await;
    logs.as_array()
        .expect("logs")
        .iter()
        .filter(|l| l["data"].as_str().is_some_and(|d| d.len() == 66))
        .map(|l| {
            let t = l["topics"].as_array().expect("topics");
            let addr = |v: &Value| format!("0x{}", &v.as_str().expect("topic")[26..]);
            let value = U256::from_str_radix(&l["data"].as_str().expect("data")[2..], 16).expect("value");
            (hex_u64(&l["blockNumber"]), hex_u64(&l["logIndex"]), addr(&t[1]), addr(&t[2]), value)
        })
        .collect()
}

async fn our_transfers(pool: &sqlx::SqlitePool, order: &str) -> Vec<(u64, u64, String, String, U256)> {
    let sql = format!(
        "SELECT block_number, log_index, \"from\", \"to\", value_dec FROM evt_tok_transfer_view ORDER BY {order}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("rows")
        .iter()
        .map(|r| {
            let n: i64 = r.get(0);
            let li: i64 = r.get(1);
            let v: String = r.get(4);
            (
                u64::try_from(n).expect("n"),
                u64::try_from(li).expect("li"),
                r.get(2),
                r.get(3),
                v.parse().expect("decimal"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_events_equal_the_nodes_and_sort_as_numbers() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    let (emitter, bad) = emit_chain(&anvil, 120).await;
    let db = temp_db();
    backfill_with(&anvil, &db, |c| c.index.contracts = vec![contract(&emitter)]).await;
    let pool = inspect(&db.path).await;
    integrity_ok(&pool).await;
    let theirs = node_transfers(&anvil, &emitter).await;
    assert!(theirs.len() > 150, "{} transfers", theirs.len());
    assert_eq!(our_transfers(&pool, "block_number, log_index").await, theirs);
    // ORDER BY the sortable column is numeric order; WHERE with an integer compares numbers.
    let mut by_value = theirs.clone();
    by_value.sort_by(|a, b| a.4.cmp(&b.4).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let ours_by_value = our_transfers(&pool, "value, block_number, log_index").await;
    assert_eq!(ours_by_value.iter().map(|t| t.4).collect::<Vec<_>>(), by_value.iter().map(|t| t.4).collect::<Vec<_>>());
    let cut = 1_000_000_000_000i64;
    let above: i64 = sqlx::query_scalar("SELECT count(*) FROM evt_tok_transfer_view WHERE value > ?1")
        .bind(cut)
        .fetch_one(&pool)
        .await
        .expect("count");
    let want = theirs.iter().filter(|t| t.4 > U256::from(cut)).count();
    assert_eq!(usize::try_from(above).expect("n"), want, "WHERE value > ? counts numerically");
    // Notes: the indexed string is its hash; the dynamic values decode.
    let notes =
        scalar_i64(&pool, "SELECT count(*) FROM evt_tok_note_view WHERE length(tag) = 66 AND text LIKE 'text %'").await;
    assert_eq!(notes, 40, "one note every third block");
    let lists =
        scalar_i64(&pool, "SELECT count(*) FROM evt_tok_note_view WHERE json_valid(list) AND delta_dec IS NOT NULL")
            .await;
    assert_eq!(lists, 40);
    // Malformed logs: counted, visible, and still in the raw logs.
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM decode_errors_view WHERE event_table = 'evt_tok_transfer'").await,
        bad
    );
    let raw = scalar_i64(&pool, "SELECT count(*) FROM logs_view WHERE length(data) = 8").await;
    assert_eq!(raw, bad, "the malformed logs stay in logs_view");
    pool.close().await;
    over_http(&anvil, &db, &emitter, &theirs, bad).await;
}

/// The same data over the HTTP routes of a read-only `serve`.
async fn over_http(anvil: &Anvil, db: &TempDb, emitter: &str, theirs: &[(u64, u64, String, String, U256)], bad: i64) {
    let (_server, _store, base) = crate::api::serve_db(db, blockstreamer::api::ApiOptions::default()).await;
    let c = crate::http::client();
    let get = |path: String| {
        let c = c.clone();
        let url = format!("{base}{path}");
        async move { crate::http::get(&c, &url).await }
    };
    // /v1/logs, paged by cursor, equals eth_getLogs for the same filter.
    let head = anvil.head().await;
    let topic = keccak256("Transfer(address,address,uint256)");
    let node = anvil
        .call("eth_getLogs", rpc_params![json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter, "topics": [topic.to_string()]})])
        .await;
    let node: Vec<(u64, u64, String)> = node
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (hex_u64(&l["blockNumber"]), hex_u64(&l["logIndex"]), l["data"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let mut ours = Vec::new();
    let mut cursor = String::new();
    loop {
        let page =
            get(format!("/v1/logs?address={emitter}&topic0=Transfer(address,address,uint256)&limit=50{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let v = page.json();
        for l in v["logs"].as_array().expect("logs") {
            assert_eq!(l["topics"][0], topic.to_string());
            ours.push((
                l["block_number"].as_u64().unwrap_or(0),
                l["log_index"].as_u64().unwrap_or(0),
                l["data"].as_str().unwrap_or_default().to_string(),
            ));
        }
        match v["next_cursor"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(ours, node, "/v1/logs pages equal eth_getLogs");
    // By a topic alone, and by a block.
    let (_, _, from, _, _) = &theirs[3];
    let by_from = get(format!("/v1/logs?topic1=0x{:0>64}", &from[2..])).await.json();
    assert_eq!(by_from["logs"].as_array().map_or(0, Vec::len), theirs.iter().filter(|t| t.2 == *from).count());
    let block = get(format!("/v1/blocks/{}/logs", theirs[0].0)).await.json();
    assert_eq!(block["logs"].as_array().map_or(0, Vec::len), 3, "{block}");
    // A receipt, with its logs.
    let tx = block["logs"][0]["transaction_hash"].as_str().expect("tx").to_string();
    let r = get(format!("/v1/transactions/{tx}/receipt")).await.json();
    let node_r = anvil.call("eth_getTransactionReceipt", rpc_params![tx.clone()]).await;
    assert_eq!(r["gas_used"].as_u64(), Some(hex_u64(&node_r["gasUsed"])), "{r}");
    assert_eq!(r["status"], 1);
    assert_eq!(r["logs"].as_array().map_or(0, Vec::len), 1);
    // Decoded rows: by an indexed address, by an exact wide value; errors listed.
    let tables = get("/v1/event-tables".into()).await.json();
    assert_eq!(tables["tables"].as_array().map_or(0, Vec::len), 2, "{tables}");
    let rows = get(format!("/v1/events/evt_tok_transfer?from={from}&limit=1000")).await.json();
    let want: Vec<String> = theirs.iter().filter(|t| t.2 == *from).map(|t| t.4.to_string()).collect();
    let got: Vec<String> = rows["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["value"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(got, want, "{rows}");
    let big = theirs.iter().find(|t| t.4 > U256::from(u64::MAX)).expect("a wide value");
    let exact = get(format!("/v1/events/evt_tok_transfer_view?value={}", big.4)).await.json();
    assert_eq!(exact["rows"][0]["log_index"].as_u64(), Some(big.1), "{exact}");
    let errors = get("/v1/decode-errors?table=evt_tok_transfer".into()).await.json();
    assert_eq!(i64::try_from(errors["errors"].as_array().map_or(0, Vec::len)).ok(), Some(bad), "{errors}");
    // Mistakes say what is wrong.
    for (path, status, words) in [
        ("/v1/events/evt_tok_transfer?nope=1".to_string(), 400, "has no column"),
        ("/v1/events/evt_tok_transfer?value=12x".to_string(), 400, "decimal integer"),
        ("/v1/events/evt_missing".to_string(), 404, "evt_tok_note"),
        ("/v1/logs?address=0x12".to_string(), 400, "40 hex digits"),
        ("/v1/logs?cursor=5".to_string(), 400, "BLOCK:LOG_INDEX"),
        (format!("/v1/transactions/0x{}/receipt", "ab".repeat(32)), 404, "no receipt"),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.text().contains(words), "{path}: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_receipts_only_the_selected_logs_are_kept() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    let (emitter, _) = emit_chain(&anvil, 60).await;
    let db = temp_db();
    backfill_with(&anvil, &db, |c| {
        c.index.receipts = Some(false);
        c.index.logs = vec![LogFilterConfig {
            address: vec![emitter.clone()],
            topic0: vec!["Transfer(address,address,uint256)".into()],
            ..LogFilterConfig::default()
        }];
        c.index.logs_range = 7;
        c.index.contracts = vec![contract(&emitter)];
    })
    .await;
    let pool = inspect(&db.path).await;
    integrity_ok(&pool).await;
    // The filter plus the contract's events: transfers and notes, nothing else (no deployment log).
    let head = anvil.head().await;
    let theirs = anvil
        .call(
            "eth_getLogs",
            rpc_params![json!({"fromBlock": "0x0", "toBlock": format!("{head:#x}"), "address": emitter})],
        )
        .await;
    let theirs: Vec<(u64, u64)> = theirs
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| (hex_u64(&l["blockNumber"]), hex_u64(&l["logIndex"])))
        .collect();
    let ours: Vec<(i64, i64)> = sqlx::query_as("SELECT block_number, log_index FROM logs_view ORDER BY 1, 2")
        .fetch_all(&pool)
        .await
        .expect("logs");
    let ours: Vec<(u64, u64)> =
        ours.iter().map(|(a, b)| (u64::try_from(*a).expect("n"), u64::try_from(*b).expect("i"))).collect();
    assert_eq!(ours, theirs);
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM receipts").await, 0, "no receipts fetched");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE tx_count > 0 AND receipts <> 2").await, 0);
    assert_eq!(our_transfers(&pool, "block_number, log_index").await, node_transfers(&anvil, &emitter).await);
    let calls = scalar_i64(&pool, "SELECT count(*) FROM provider_requests WHERE method = 'eth_getLogs'").await;
    assert!(calls > 0, "eth_getLogs was used");
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM provider_requests WHERE method = 'eth_getBlockReceipts'").await,
        0
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_added_later_is_decoded_from_the_stored_logs() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    let (emitter, _) = emit_chain(&anvil, 50).await;
    let db = temp_db();
    backfill_with(&anvil, &db, |_| {}).await;
    let requests_before = scalar_i64(&inspect(&db.path).await, "SELECT count(*) FROM provider_requests").await;
    // Same chain, a contract now: nothing new to fetch, every row from the stored logs.
    backfill_with(&anvil, &db, |c| c.index.contracts = vec![contract(&emitter)]).await;
    let pool = inspect(&db.path).await;
    assert_eq!(our_transfers(&pool, "block_number, log_index").await, node_transfers(&anvil, &emitter).await);
    let block_calls =
        scalar_i64(&pool, "SELECT count(*) FROM provider_requests WHERE method = 'eth_getBlockReceipts'").await;
    assert!(block_calls > 0 && requests_before > 0);
    let cursor = scalar_i64(&pool, "SELECT count(*) FROM event_tables WHERE backfill_cursor IS NOT NULL").await;
    assert_eq!(cursor, 0, "backfills finished");
    pool.close().await;
}
