//! Backfill from a real anvil through three provider entries; every stored value equals anvil's.

use blockstreamer::app::{App, AppOptions};
use blockstreamer::config::Config;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Anvil, hex_u64, init_tracing, inspect, integrity_ok, temp_db};

pub fn config_for(urls: &[String], names: &[&str]) -> Config {
    let mut c = Config::default();
    c.add_rpc_urls(urls);
    for (p, n) in c.providers.iter_mut().zip(names) {
        p.name = Some((*n).to_string());
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_300_blocks_matches_anvil() {
    init_tracing();
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(300, 10).await;
    let head = anvil.head().await;
    assert_eq!(head, 300);

    let db = temp_db();
    let url = anvil.url();
    let mut config = config_for(&[url.clone(), url.clone(), url], &["a", "b", "c"]);
    config.batch_size = 7; // odd size: chunks straddle commit batches
    config.bulk_load_min_blocks = 100; // exercise the bulk path: tx-hash index dropped, rebuilt
    let app = App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start");
    let cancel = CancellationToken::new();
    let report = app.backfill(0, head, &cancel).await.expect("backfill");
    assert_eq!(report.fetched, 301);
    let inv = app.store.chain_invariants().await.expect("invariants");
    app.shutdown().await;
    assert_eq!(inv.heights, 301);
    assert!(inv.ok(), "{inv:?}");

    let pool = inspect(&db.path).await;
    integrity_ok(&pool).await;
    let idx: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'transactions_hash'")
        .fetch_one(&pool)
        .await
        .expect("schema");
    assert_eq!(idx, 1, "tx-hash index rebuilt after the bulk load");
    let per_height: Vec<(i64, i64)> =
        sqlx::query_as("SELECT number, count(*) FROM blocks WHERE canonical = 1 GROUP BY number ORDER BY number")
            .fetch_all(&pool)
            .await
            .expect("heights");
    assert_eq!(per_height.len(), 301);
    for (i, (n, c)) in per_height.iter().enumerate() {
        assert_eq!((*n, *c), (i64::try_from(i).expect("i64"), 1), "every height exactly once");
    }
    let mut txs_checked = 0;
    for n in 0..=head {
        let want = anvil.block(n, true).await;
        let row =
            sqlx::query("SELECT hash, parent_hash, tx_count, hash_verified FROM canonical_blocks WHERE number = ?1")
                .bind(i64::try_from(n).expect("i64"))
                .fetch_one(&pool)
                .await
                .expect("block row");
        assert_eq!(row.get::<String, _>(0), want["hash"].as_str().expect("hash"), "hash of {n}");
        assert_eq!(row.get::<String, _>(1), want["parentHash"].as_str().expect("parent"), "parent of {n}");
        let txs = want["transactions"].as_array().expect("txs");
        assert_eq!(row.get::<i64, _>(2), i64::try_from(txs.len()).expect("len"), "tx count of {n}");
        assert_eq!(row.get::<Option<i64>, _>(3), Some(1), "header hash of {n} verified");
        if n > 0 {
            assert_eq!(txs.len(), 10);
        }
        let stored = sqlx::query(
            "SELECT hash, from_address, to_address, value, nonce FROM transactions_view \
             WHERE block_number = ?1 ORDER BY transaction_index",
        )
        .bind(i64::try_from(n).expect("i64"))
        .fetch_all(&pool)
        .await
        .expect("txs");
        assert_eq!(stored.len(), txs.len());
        for (s, t) in stored.iter().zip(txs) {
            assert_eq!(s.get::<String, _>(0), t["hash"].as_str().expect("hash"));
            assert_eq!(s.get::<String, _>(1), t["from"].as_str().expect("from"));
            assert_eq!(s.get::<Option<String>, _>(2).as_deref(), t["to"].as_str());
            assert_eq!(u64::try_from(s.get::<i64, _>(3)).expect("value"), hex_u64(&t["value"]));
            assert_eq!(u64::try_from(s.get::<i64, _>(4)).expect("nonce"), hex_u64(&t["nonce"]));
            txs_checked += 1;
        }
    }
    assert_eq!(txs_checked, 3000);
    // Re-running the same range fetches nothing: the stored prefix is skipped.
    let config = config_for(&[anvil.url()], &["a"]);
    let app = App::start(AppOptions { db: db.path.clone(), config, progress: false }).await.expect("start");
    let report = app.backfill(0, head, &cancel).await.expect("backfill again");
    app.shutdown().await;
    assert_eq!(report.fetched, 0);
}
