//! Migrations apply once, re-runs apply nothing, a failing migration rolls back; every SQL
//! file prepares against the migrated schema.

use std::path::Path;

use blockstreamer::store::migrate::{SqlxMigrator, runner};
use blockstreamer::store::{Store, StoreOptions};
use refinery_core::{Migration, Runner};
use sqlx::{AssertSqlSafe, Connection, Executor, SqlSafeStr, SqliteConnection};

use crate::helpers::{inspect, scalar_i64, temp_db};

async fn connect(path: &Path) -> SqliteConnection {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
    SqliteConnection::connect_with(&opts).await.expect("connect")
}

#[tokio::test]
async fn fresh_db_applies_all_then_none() {
    let db = temp_db();
    let mut conn = connect(&db.path).await;
    let report = runner().run_async(&mut SqlxMigrator(&mut conn)).await.expect("first run");
    let total = runner().get_migrations().len();
    assert!(total >= 2);
    assert_eq!(report.applied_migrations().len(), total);
    let report = runner().run_async(&mut SqlxMigrator(&mut conn)).await.expect("second run");
    assert!(report.applied_migrations().is_empty(), "second run applies none");
    // Store::open on an already-migrated file is a no-op too.
    drop(conn);
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    store.close().await;
    let pool = inspect(&db.path).await;
    let rows = scalar_i64(&pool, "SELECT count(*) FROM refinery_schema_history").await;
    assert_eq!(usize::try_from(rows).expect("count"), total);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn failing_migration_rolls_back() {
    let db = temp_db();
    let mut conn = connect(&db.path).await;
    runner().run_async(&mut SqlxMigrator(&mut conn)).await.expect("migrate");
    let mut all: Vec<Migration> = runner().get_migrations().clone();
    let bad = Migration::unapplied(
        "V900__half_done",
        "CREATE TABLE half_done (a INTEGER); INSERT INTO half_done VALUES (1); SELECT * FROM no_such_table;",
    )
    .expect("migration");
    all.push(bad);
    let err = Runner::new(&all).run_async(&mut SqlxMigrator(&mut conn)).await;
    assert!(err.is_err(), "the bad migration fails");
    let exists: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(exists, 0, "the table created before the failure was rolled back");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM refinery_schema_history WHERE version = 900")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(recorded, 0, "no history row for the failed migration");
}

fn sql_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read sql dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sql_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "sql") {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn every_sql_file_prepares() {
    let db = temp_db();
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    store.close().await;
    let mut conn = connect(&db.path).await;
    let mut files = Vec::new();
    sql_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sql"), &mut files);
    assert!(files.len() >= 10, "found {} sql files", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        if let Err(e) = conn.prepare(AssertSqlSafe(text).into_sql_str()).await {
            panic!("{} does not prepare: {e}", f.display());
        }
    }
}

#[tokio::test]
async fn tx_hash_index_survives_an_interrupted_bulk_load() {
    let db = temp_db();
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    let pool = inspect(&db.path).await;
    let names = ["transactions_hash", "receipts_tx_hash", "logs_tx"];
    let mut original = Vec::new();
    for n in names {
        let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = ?")
            .bind(n)
            .fetch_one(&pool)
            .await
            .expect("index from the migration");
        original.push(sql);
    }
    store.begin_bulk_load(true).await.expect("bulk");
    let gone = scalar_i64(
        &pool,
        "SELECT count(*) FROM sqlite_schema WHERE name IN ('transactions_hash', 'receipts_tx_hash', 'logs_tx')",
    )
    .await;
    assert_eq!(gone, 0);
    // The process dies here; the next open rebuilds the indexes, identical to the migrations'.
    store.close().await;
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("reopen");
    for (n, want) in names.iter().zip(&original) {
        let rebuilt: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = ?")
            .bind(*n)
            .fetch_one(&pool)
            .await
            .expect("index rebuilt");
        assert_eq!(rebuilt.replace("IF NOT EXISTS ", ""), *want, "{n}");
    }
    store.close().await;
}

#[tokio::test]
async fn unclean_shutdown_is_detected_and_checked() {
    let db = temp_db();
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    assert_eq!(store.meta("clean_shutdown").await.expect("meta"), Some(0), "open marks the file in use");
    store.close().await;
    let pool = inspect(&db.path).await;
    assert_eq!(scalar_i64(&pool, "SELECT value FROM meta WHERE key = 'clean_shutdown'").await, 1);
    // Open and "crash" (never close): the next open sees 0 and runs quick_check before use.
    let crashed = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    drop(crashed);
    assert_eq!(scalar_i64(&pool, "SELECT value FROM meta WHERE key = 'clean_shutdown'").await, 0);
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("reopen after unclean shutdown");
    store.close().await;
}

#[tokio::test]
async fn a_bulk_load_is_checkpointed_beside_its_commits() {
    use blockstreamer::model::{CommitBatch, ProviderId};
    use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
    let db = temp_db();
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    let chain = crate::bed::sim_chain(1_200, 5);
    let opts = DecodeOptions { full_transactions: true, verify_header_hash: true, keep_raw: true };
    store.begin_bulk_load(false).await.expect("bulk");
    for from in (0..1_200).step_by(100) {
        let blocks = (from..from + 100)
            .map(|k| {
                let b = chain.block(k).expect("in the chain");
                decode_block(b.json(true).get(), Want::Number(k), opts, ProviderId(0)).expect("decode")
            })
            .collect();
        store.commit_owned(CommitBatch { reorg: None, blocks }).await.expect("bulk commit");
    }
    // The bulk connection never checkpoints inside a commit (autocheckpoint off) and nothing else
    // writes: the main file holds the blocks only if the background checkpointer copied them.
    let pool = inspect(&db.path).await;
    let logical = scalar_i64(&pool, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size").await;
    let main_file = || std::fs::metadata(&db.path).map_or(0, |m| m.len());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while main_file() < u64::try_from(logical).expect("size") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(main_file() >= u64::try_from(logical).expect("size"), "main file {} of {logical} bytes", main_file());
    assert!(logical > 4 << 20, "the load spans many autocheckpoints' worth ({logical} bytes)");
    store.end_bulk_load().await.expect("end");
    store.close().await;
}
