//! The report queries in sql/reports/ on a small hand-made fixture, against numbers worked out
//! by hand (in the comments), through the same sandbox `blockstreamer sql -f` uses; then
//! retention: raw rows go after raw_days, the reports do not change, rollups go after
//! rollup_days, and raw rows the rollups do not hold yet are never deleted.

use blockstreamer::api::{Sandbox, SandboxLimits};
use blockstreamer::store::{Store, StoreOptions};
use serde_json::{Value, json};

use crate::helpers::{init_tracing, inspect, scalar_i64, temp_db};

/// 2026-11-20T00:00:00Z.
const D0: i64 = 1_795_132_800_000;
const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn report(name: &str) -> String {
    std::fs::read_to_string(format!("{}/sql/reports/{name}.sql", env!("CARGO_MANIFEST_DIR"))).expect("report file")
}

async fn run(sb: &Sandbox, name: &str) -> Vec<Value> {
    let r = sb.query(report(name), vec![]).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    r.to_json_objects().as_array().cloned().unwrap_or_default()
}

/// A 32-byte blob literal ending in `k`.
fn hash_lit(k: u8) -> String {
    format!("x'{}{k:02x}'", "00".repeat(31))
}

async fn fixture(pool: &sqlx::SqlitePool) {
    let stmts = [
        "INSERT INTO providers (id, name, url_redacted, added_at_ms) VALUES (1, 'a', 'http://a', 0), (2, 'b', 'http://b', 0)"
            .to_string(),
        // Provider a, eth_getBlockByNumber, day D0:
        //   minute 0: ok 1000 µs, ok 2000 µs, ok 3000 µs, http_5xx 502
        //   minute 1: rate_limited 429, cancelled (a hedge loser)
        //   minute 2: timeout
        // Provider b, same method, minute 0: ok 100 µs, ok 500 µs.
        // Provider a, eth_blockNumber, day D0 + 1: ok 10,000 µs.
        format!(
            "INSERT INTO provider_requests (ts_ms, provider_id, method, latency_us, outcome, http_status, rpc_code, attempt, credits) VALUES
             ({m0}, 1, 'eth_getBlockByNumber', 1000, 'ok', 200, NULL, 1, 16),
             ({m0} + 1, 1, 'eth_getBlockByNumber', 2000, 'ok', 200, NULL, 1, 16),
             ({m0} + 2, 1, 'eth_getBlockByNumber', 3000, 'ok', 200, NULL, 1, 16),
             ({m0} + 3, 1, 'eth_getBlockByNumber', 500, 'http_5xx', 502, NULL, 1, 16),
             ({m1}, 1, 'eth_getBlockByNumber', 40, 'rate_limited', 429, NULL, 1, 0),
             ({m1} + 1, 1, 'eth_getBlockByNumber', 700, 'cancelled', NULL, NULL, 1, 16),
             ({m2}, 1, 'eth_getBlockByNumber', 9000, 'timeout', NULL, NULL, 1, 16),
             ({m0} + 4, 2, 'eth_getBlockByNumber', 100, 'ok', 200, NULL, 1, 16),
             ({m0} + 5, 2, 'eth_getBlockByNumber', 500, 'ok', 200, NULL, 1, 16),
             ({d1}, 1, 'eth_blockNumber', 10000, 'ok', 200, NULL, 1, 10)",
            m0 = D0,
            m1 = D0 + MIN,
            m2 = D0 + 2 * MIN,
            d1 = D0 + DAY + 5 * MIN
        ),
        // Sightings (ms after D0): H1 a 1000, b 1250; H2 b 2000, a 2100; H3 a 3000, b 3000; H4 a 4000.
        format!(
            "INSERT INTO block_sightings (provider_id, hash, number, first_seen_ms) VALUES
             (1, {h1}, 100, {d} + 1000), (2, {h1}, 100, {d} + 1250),
             (2, {h2}, 101, {d} + 2000), (1, {h2}, 101, {d} + 2100),
             (1, {h3}, 102, {d} + 3000), (2, {h3}, 102, {d} + 3000),
             (1, {h4}, 103, {d} + 4000)",
            d = D0,
            h1 = hash_lit(1),
            h2 = hash_lit(2),
            h3 = hash_lit(3),
            h4 = hash_lit(4)
        ),
        // Two orphaned blocks at 51 and 52 (replaced by the first reorg).
        "INSERT INTO blocks (hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, state_root, transactions_root,
                             receipts_root, tx_count, full_txs, canonical, fetched_at_ms)
         SELECT randomblob(32), n, randomblob(32), 0, zeroblob(20), 0, 0, zeroblob(32), zeroblob(32), zeroblob(32), 0, 1, 0, 0
         FROM (SELECT 51 AS n UNION ALL SELECT 52)"
            .to_string(),
        format!(
            "INSERT INTO reorgs (detected_at_ms, depth, fork_number, fork_hash, old_tip_number, old_tip_hash, new_tip_number,
                                 new_tip_hash, provider_id) VALUES
             ({D0} + 5000, 2, 50, zeroblob(32), 52, zeroblob(32), 53, zeroblob(32), 2),
             ({D0} + 9000, 1, 60, zeroblob(32), 61, zeroblob(32), 61, zeroblob(32), NULL)"
        ),
        // Gap 10..=12: failed via a, then repaired via b. Gap 40: a broken link, still open.
        format!(
            "INSERT INTO gap_repairs (detected_at_ms, attempted_at_ms, from_number, to_number, reason, provider_id, outcome, blocks, error) VALUES
             ({D0} + 1000, {D0} + 2000, 10, 12, 'missing', 1, 'failed', 0, 'timeout'),
             ({D0} + 1000, {D0} + 5000, 10, 12, 'missing', 2, 'repaired', 3, NULL),
             ({D0} + 7000, {D0} + 7100, 40, 40, 'broken_link', 1, 'failed', 0, 'mismatch')"
        ),
    ];
    for s in stmts {
        sqlx::query(sqlx::AssertSqlSafe(s)).execute(pool).await.expect("fixture insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_hand_computed_numbers_and_survive_retention() {
    init_tracing();
    let db = temp_db();
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    let pool = inspect(&db.path).await;
    fixture(&pool).await;
    store.catch_up_rollups().await.expect("fold");
    let sb = Sandbox::new(
        &db.path,
        blockstreamer::store::Access::ReadOnly,
        SandboxLimits { max_rows: 10_000, ..SandboxLimits::default() },
    );

    // Leaderboard. a/getBlockByNumber on D0: requests 6 (cancelled excluded), ok 3, errors 2
    // (502, timeout), throttled 1; minutes with calls 3, with a success 1 → uptime 1/3;
    // error rate 2/5; throttle rate 1/6; latencies 1000/2000/3000 µs fall in the buckets with
    // upper bounds 1083/2111/3091 µs → p50 2.111 ms (2nd of 3), p95 = p99 = 3.091 ms;
    // credits 16 × 6 = 96 (the throttled call cost 0). b: 100 and 500 µs → buckets 100 and
    // 505 → p50 0.1, p95 0.505; credits 32. a/eth_blockNumber on D0+1: 10,000 µs → 10,671.
    let leaderboard = json!([
        {"day": "2026-11-21", "provider": "a", "method": "eth_blockNumber", "requests": 1, "uptime": 1.0,
         "error_rate": 0.0, "throttle_rate": 0.0, "p50_ms": 10.671, "p95_ms": 10.671, "p99_ms": 10.671, "credits": 10},
        {"day": "2026-11-20", "provider": "b", "method": "eth_getBlockByNumber", "requests": 2, "uptime": 1.0,
         "error_rate": 0.0, "throttle_rate": 0.0, "p50_ms": 0.1, "p95_ms": 0.505, "p99_ms": 0.505, "credits": 32},
        {"day": "2026-11-20", "provider": "a", "method": "eth_getBlockByNumber", "requests": 6, "uptime": 0.3333,
         "error_rate": 0.4, "throttle_rate": 0.1667, "p50_ms": 2.111, "p95_ms": 3.091, "p99_ms": 3.091, "credits": 96},
    ]);
    assert_eq!(Value::Array(run(&sb, "leaderboard").await), leaderboard);

    // Propagation. a: behind 0, 100, 0, 0 → sorted 0,0,0,100: p50 0 (2nd), p95 100 (4th),
    // first 3 of 4. b: 250, 0, 0 → p50 0, p95 250, first 2 of 3 (the tie on H3 counts for both).
    let propagation = json!([
        {"day": "2026-11-20", "provider": "a", "blocks_seen": 4, "first": 3, "p50_behind_ms": 0, "p95_behind_ms": 100, "max_behind_ms": 100},
        {"day": "2026-11-20", "provider": "b", "blocks_seen": 3, "first": 2, "p50_behind_ms": 0, "p95_behind_ms": 250, "max_behind_ms": 250},
    ]);
    assert_eq!(Value::Array(run(&sb, "propagation").await), propagation);

    // Errors: a's hour 00:00 of D0 had 6 calls; one each of 502, 429 and a timeout → 1/6 each.
    let errors = json!([
        {"hour": "2026-11-20 00:00", "provider": "a", "outcome": "http_5xx", "http_status": 502, "rpc_code": 0, "failures": 1, "share_of_calls": 0.1667},
        {"hour": "2026-11-20 00:00", "provider": "a", "outcome": "rate_limited", "http_status": 429, "rpc_code": 0, "failures": 1, "share_of_calls": 0.1667},
        {"hour": "2026-11-20 00:00", "provider": "a", "outcome": "timeout", "http_status": 0, "rpc_code": 0, "failures": 1, "share_of_calls": 0.1667},
    ]);
    assert_eq!(Value::Array(run(&sb, "errors").await), errors);

    let zero = format!("0x{}", "00".repeat(32));
    let reorgs = run(&sb, "reorgs").await;
    assert_eq!(reorgs.len(), 2);
    assert_eq!(reorgs[0]["detected_at"], "2026-11-20T00:00:09.000Z");
    assert_eq!((reorgs[0]["depth"].clone(), reorgs[0]["orphaned_stored"].clone()), (json!(1), json!(0)));
    assert_eq!(reorgs[0]["provider"], Value::Null);
    assert_eq!(reorgs[1]["detected_at"], "2026-11-20T00:00:05.000Z");
    assert_eq!(
        (reorgs[1]["depth"].clone(), reorgs[1]["fork_number"].clone(), reorgs[1]["orphaned_stored"].clone()),
        (json!(2), json!(50), json!(2))
    );
    assert_eq!((reorgs[1]["provider"].clone(), reorgs[1]["fork_hash"].clone()), (json!("b"), json!(zero)));

    // Gaps: 40 (open, one failed attempt via a), then 10..=12 (failed via a, repaired via b
    // 4 s after detection).
    let gaps = json!([
        {"from_number": 40, "to_number": 40, "heights": 1, "reason": "broken_link", "first_detected": "2026-11-20T00:00:07.000Z",
         "attempts": 1, "providers": "a", "last_outcome": "failed", "repair_ms": null},
        {"from_number": 10, "to_number": 12, "heights": 3, "reason": "missing", "first_detected": "2026-11-20T00:00:01.000Z",
         "attempts": 2, "providers": "a,b", "last_outcome": "repaired", "repair_ms": 4000},
    ]);
    assert_eq!(Value::Array(run(&sb, "gaps").await), gaps);

    // A raw row the rollups do not hold yet (written behind the store's back): never pruned.
    sqlx::query("INSERT INTO provider_requests (ts_ms, provider_id, method, latency_us, outcome, attempt) VALUES (?1, 1, 'x', 1, 'ok', 1)")
        .bind(D0 - DAY)
        .execute(&pool)
        .await
        .expect("unfolded row");

    // Eight days later: D0's raw rows go (raw_days 7), D0+1's stay, every report is unchanged.
    let r = store.prune_telemetry(D0 + 8 * DAY, 7, 90).await.expect("prune");
    assert_eq!((r.raw_requests, r.rollup_rows, r.sightings), (9, 0, 0), "{r:?}");
    assert_eq!(scalar_i64(&pool, "SELECT count(*) FROM provider_requests").await, 2, "D0+1 and the unfolded row");
    assert_eq!(Value::Array(run(&sb, "leaderboard").await), leaderboard);
    assert_eq!(Value::Array(run(&sb, "errors").await), errors);
    assert_eq!(Value::Array(run(&sb, "propagation").await), propagation);

    // A hundred days later: rollups, sightings go too (rollup_days 90).
    let r = store.prune_telemetry(D0 + 100 * DAY, 7, 90).await.expect("prune");
    assert!(r.rollup_rows > 0 && r.sightings == 7, "{r:?}");
    assert_eq!(run(&sb, "leaderboard").await, Vec::<Value>::new());
    assert_eq!(run(&sb, "propagation").await, Vec::<Value>::new());
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM provider_requests WHERE method = 'x'").await,
        1,
        "still unfolded"
    );
    // The chain history reports do not expire.
    assert_eq!(run(&sb, "gaps").await.len(), 2);
    assert_eq!(run(&sb, "reorgs").await.len(), 2);
    pool.close().await;
    store.close().await;
}
