//! Export: every table in every format read back (parquet crate, serde) equals the database;
//! a range spanning a reorg holds only canonical blocks; finished chunks are skipped; kill -9
//! leaves no partial file under a final name; HTTP export streams the same bytes; the SQL
//! sandbox refuses the API-01 list from the command line too; a reorg stored mid-export makes a
//! file chunk be read again and ends an HTTP stream with an error.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tokio_util::sync::CancellationToken;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use blockstreamer::api::ApiOptions;
use blockstreamer::export::{self, ExportOptions, Format, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::{Row, SqlitePool};

use crate::api::{fixture_db, serve_db};
use crate::api_security::{escape_attempts, listing, sha256_file};
use crate::helpers::{TempDb, init_tracing, inspect, scalar_i64};
use crate::http::{self, client};

type Rows = Vec<Vec<String>>;

/// The database's rows as text (numbers in decimal, flags true/false, bytes 0x hex, NULL
/// empty), in export order — written independently of sql/export so a mistake there shows.
fn expected_sql(table: &Table) -> String {
    let sql = match table {
        Table::Blocks => {
            "SELECT number, '0x'||lower(hex(hash)), '0x'||lower(hex(parent_hash)), timestamp, '0x'||lower(hex(miner)),
                    gas_used, gas_limit, coalesce(CAST(base_fee_per_gas AS TEXT), ''), '0x'||lower(hex(state_root)),
                    '0x'||lower(hex(transactions_root)), '0x'||lower(hex(receipts_root)), coalesce(CAST(size AS TEXT), ''),
                    tx_count, CASE hash_verified WHEN 1 THEN 'true' WHEN 0 THEN 'false' ELSE '' END,
                    coalesce((SELECT name FROM providers p WHERE p.id = provider_id), ''), fetched_at_ms,
                    CASE canonical WHEN 1 THEN 'true' ELSE 'false' END
             FROM blocks WHERE canonical = 1 OR ?1 ORDER BY number, id"
        }
        Table::Transactions => {
            "SELECT b.number, '0x'||lower(hex(b.hash)), t.idx, '0x'||lower(hex(t.hash)), '0x'||lower(hex(t.from_address)),
                    CASE WHEN t.to_address IS NULL THEN '' ELSE '0x'||lower(hex(t.to_address)) END, CAST(t.value AS TEXT), t.nonce, t.gas,
                    coalesce(CAST(t.gas_price AS TEXT), ''), coalesce(CAST(t.max_fee_per_gas AS TEXT), ''),
                    coalesce(CAST(t.max_priority_fee_per_gas AS TEXT), ''), '0x'||lower(hex(t.input)), t.tx_type,
                    b.timestamp, CASE b.canonical WHEN 1 THEN 'true' ELSE 'false' END
             FROM transactions t JOIN blocks b ON b.id = t.block_id
             WHERE b.canonical = 1 OR ?1 ORDER BY b.number, b.id, t.idx"
        }
        Table::ProviderRequests => {
            "SELECT r.id, r.ts_ms, p.name, r.method, coalesce(CAST(r.block_number AS TEXT), ''), r.latency_us, r.outcome,
                    coalesce(CAST(r.http_status AS TEXT), ''), coalesce(CAST(r.rpc_code AS TEXT), ''),
                    coalesce(CAST(r.bytes AS TEXT), ''), coalesce(CAST(r.head_reported AS TEXT), ''), r.attempt,
                    CASE r.hedged WHEN 1 THEN 'true' ELSE 'false' END, r.batch_size, r.credits, coalesce(r.error, '')
             FROM provider_requests r JOIN providers p ON p.id = r.provider_id WHERE ?1 IN (0, 1) ORDER BY r.ts_ms, r.id"
        }
        Table::BlockSightings => {
            "SELECT s.number, '0x'||lower(hex(s.hash)), p.name, s.first_seen_ms,
                    s.first_seen_ms - (SELECT min(first_seen_ms) FROM block_sightings o WHERE o.hash = s.hash)
             FROM block_sightings s JOIN providers p ON p.id = s.provider_id WHERE ?1 IN (0, 1)
             ORDER BY s.number, s.provider_id, s.hash"
        }
        Table::Reorgs => {
            "SELECT id, detected_at_ms, depth, fork_number, '0x'||lower(hex(fork_hash)), old_tip_number,
                    '0x'||lower(hex(old_tip_hash)), new_tip_number, '0x'||lower(hex(new_tip_hash)),
                    coalesce((SELECT name FROM providers p WHERE p.id = provider_id), '')
             FROM reorgs WHERE ?1 IN (0, 1) ORDER BY fork_number, id"
        }
        Table::GapRepairs => {
            "SELECT id, detected_at_ms, attempted_at_ms, from_number, to_number, reason,
                    coalesce((SELECT name FROM providers p WHERE p.id = provider_id), ''), outcome, blocks, coalesce(error, '')
             FROM gap_repairs WHERE ?1 IN (0, 1) ORDER BY from_number, id"
        }
        Table::Receipts => {
            "SELECT block_number, block_hash, transaction_index, transaction_hash, coalesce(CAST(status AS TEXT), ''),
                    coalesce(post_state, ''), tx_type, gas_used, cumulative_gas_used,
                    coalesce(CAST(effective_gas_price AS TEXT), ''), coalesce(contract_address, ''),
                    coalesce(CAST(blob_gas_used AS TEXT), ''), coalesce(CAST(blob_gas_price AS TEXT), ''), log_count,
                    (SELECT timestamp FROM blocks b WHERE b.hash = unhex(substr(r.block_hash, 3))), 'true'
             FROM receipts_view r WHERE ?1 IN (0, 1) ORDER BY block_number, transaction_index"
        }
        Table::Logs => {
            "SELECT block_number, block_hash, transaction_index, log_index, transaction_hash, address,
                    coalesce(topic0, ''), coalesce(topic1, ''), coalesce(topic2, ''), coalesce(topic3, ''), data,
                    block_timestamp, 'true'
             FROM logs_view WHERE ?1 IN (0, 1) ORDER BY block_number, log_index"
        }
        Table::Events(_) => {
            return format!(
                "SELECT block_number, block_hash, transaction_index, log_index, transaction_hash, address,
                        \"from\", \"to\", value_dec, block_timestamp, 'true'
                 FROM {}_view WHERE ?1 IN (0, 1) ORDER BY block_number, log_index",
                table.name()
            );
        }
    };
    sql.to_string()
}

async fn expected(pool: &SqlitePool, table: &Table, include_orphaned: bool) -> Rows {
    let rows = sqlx::query(sqlx::AssertSqlSafe(expected_sql(table)))
        .bind(include_orphaned)
        .fetch_all(pool)
        .await
        .expect("expected rows");
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.try_get::<String, _>(i) {
                    Ok(s) => s,
                    Err(_) => r.try_get::<i64, _>(i).map(|v| v.to_string()).expect("text or integer"),
                })
                .collect()
        })
        .collect()
}

fn n64(n: usize) -> u64 {
    u64::try_from(n).expect("fits")
}

fn hexs(b: &[u8]) -> String {
    format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn arrow_text(col: &dyn Array, row: usize) -> String {
    if col.is_null(row) {
        return String::new();
    }
    match col.data_type() {
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Boolean => col.as_boolean().value(row).to_string(),
        DataType::FixedSizeBinary(_) => hexs(col.as_fixed_size_binary().value(row)),
        DataType::Binary => hexs(col.as_binary::<i32>().value(row)),
        DataType::Utf8 => col.as_string::<i32>().value(row).to_string(),
        other => panic!("unexpected column type {other}"),
    }
}

fn read_parquet(path: &Path, table: &Table) -> Rows {
    let file = std::fs::File::open(path).expect("open parquet");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet footer");
    assert_eq!(builder.schema().fields(), table.schema().fields(), "{}: the documented schema", path.display());
    let mut out = Vec::new();
    for batch in builder.build().expect("reader") {
        let batch: RecordBatch = batch.expect("batch");
        for row in 0..batch.num_rows() {
            out.push(batch.columns().iter().map(|c| arrow_text(c.as_ref(), row)).collect());
        }
    }
    out
}

/// RFC 4180 records (quoted fields may hold commas, quotes and newlines).
fn read_csv(path: &Path, table: &Table) -> Rows {
    let text = std::fs::read_to_string(path).expect("read csv");
    let mut records: Rows = Vec::new();
    let (mut rec, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') => quoted = true,
            (false, ',') => rec.push(std::mem::take(&mut field)),
            (false, '\n') => {
                rec.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut rec));
            }
            (_, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && rec.is_empty() && !quoted, "{}: ends with a newline", path.display());
    let header = records.remove(0);
    let names: Vec<&str> = table.columns().iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(header, names, "csv header");
    records
}

fn read_jsonl(path: &Path, table: &Table) -> Rows {
    let text = std::fs::read_to_string(path).expect("read jsonl");
    let names: Vec<&str> = table.columns().iter().map(|c| c.name.as_ref()).collect();
    text.lines()
        .map(|line| {
            let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).expect("json line");
            assert_eq!(obj.keys().map(String::as_str).collect::<Vec<_>>().len(), names.len());
            names
                .iter()
                .map(|n| match obj.get(*n).expect("every column present") {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

/// Every exported file of `table` in `dir`, in chunk order, read back.
fn read_all(dir: &Path, table: &Table, format: Format) -> Rows {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n.starts_with(&format!("{}__", table.name())) && n.ends_with(&format!(".{}", format.ext()))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| match format {
            Format::Parquet => read_parquet(f, table),
            Format::Csv => read_csv(f, table),
            Format::Jsonl => read_jsonl(f, table),
        })
        .collect()
}

fn opts(db: &TempDb, table: &Table, format: Format, out: &Path) -> ExportOptions {
    ExportOptions {
        db: db.path.clone(),
        access: blockstreamer::store::Access::ReadOnly,
        final_only: false,
        table: table.clone(),
        format,
        out: out.to_path_buf(),
        from: None,
        to: None,
        since_ms: None,
        // Telemetry up to now (by default the last minute is left out); heights take no times.
        until_ms: (*table == Table::ProviderRequests).then_some(i64::MAX),
        chunk_size: 16,
        chunk_minutes: 1,
        overwrite: false,
        include_orphaned: false,
        progress: false,
    }
}

fn run_export(o: &ExportOptions) -> export::ExportSummary {
    let o = ExportOptions { until_ms: if o.table == Table::ProviderRequests { o.until_ms } else { None }, ..o.clone() };
    export::export(&o, &CancellationToken::new()).unwrap_or_else(|e| panic!("export {}: {e}", o.table.name()))
}

/// Gap repair rows with awkward text (commas, quotes, a newline, non-ASCII) for the round trip.
async fn add_awkward_rows(pool: &SqlitePool) {
    sqlx::query(
        "INSERT INTO gap_repairs (detected_at_ms, attempted_at_ms, from_number, to_number, reason, provider_id, outcome, blocks, error)
         VALUES (1000, 2000, 10, 12, 'missing', 1, 'failed', 0, 'upstream said \"no\", twice
         then ✗'),
                (1500, 2500, 10, 12, 'missing', NULL, 'repaired', 3, NULL),
                (3000, 3100, 40, 40, 'broken_link', 2, 'repaired', 1, '')",
    )
    .execute(pool)
    .await
    .expect("gap rows");
}

/// `count` more transactions (with `input_bytes` of calldata each) in the canonical block at
/// `height`, then a checkpoint, so a chunk takes a while to export.
async fn add_transactions(pool: &SqlitePool, height: i64, count: i64, input_bytes: i64) {
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 1000 + ?2 - 1)
         INSERT INTO transactions (block_id, idx, hash, from_address, to_address, value, nonce, gas, gas_price,
                                   max_fee_per_gas, max_priority_fee_per_gas, input, tx_type)
         SELECT (SELECT id FROM blocks WHERE canonical = 1 AND number = ?1), i, randomblob(32), randomblob(20), NULL,
                i * 1000, i, 21000, 7, NULL, NULL, randomblob(?3), 0 FROM n",
    )
    .bind(height)
    .bind(count)
    .bind(input_bytes)
    .execute(pool)
    .await
    .expect("many transactions");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.expect("checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_in_every_format_reads_back_equal() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    add_awkward_rows(&pool).await;
    let out = tempfile::tempdir().expect("out");
    let decoded =
        blockstreamer::export::resolve(&db.path, blockstreamer::store::Access::ReadOnly, "evt_token_transfer")
            .expect("the fixture's decoded table");
    for table in Table::STORED.into_iter().chain([decoded]) {
        let table = &table;
        let want = expected(&pool, table, false).await;
        assert!(!want.is_empty(), "{} has rows in the fixture", table.name());
        for format in [Format::Parquet, Format::Csv, Format::Jsonl] {
            let dir = out.path().join(format!("{}-{}", table.name(), format.ext()));
            let summary = run_export(&opts(&db, table, format, &dir));
            assert_eq!(summary.rows, n64(want.len()), "{} {format:?} row count", table.name());
            let got = read_all(&dir, table, format);
            assert_eq!(got.len(), want.len(), "{} {format:?}", table.name());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "{} {format:?} row {i}", table.name());
            }
        }
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_across_a_reorg_holds_only_canonical_blocks() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    let orphans = scalar_i64(&pool, "SELECT count(*) FROM blocks WHERE canonical = 0").await;
    assert!(orphans >= 1, "the fixture reorged");
    let fork = scalar_i64(&pool, "SELECT fork_number FROM reorgs ORDER BY id LIMIT 1").await;
    let tip = scalar_i64(&pool, "SELECT max(number) FROM blocks WHERE canonical = 1").await;
    let last = (fork + 5).min(tip);
    let out = tempfile::tempdir().expect("out");
    let mut o = opts(&db, &Table::Blocks, Format::Parquet, out.path());
    o.from = Some(u64::try_from(fork - 5).expect("fork above 5"));
    o.to = Some(u64::try_from(last).expect("tip"));
    run_export(&o);
    let rows = read_all(out.path(), &Table::Blocks, Format::Parquet);
    assert_eq!(i64::try_from(rows.len()).expect("fits"), last - fork + 6, "one block per height");
    let want: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(number AS TEXT), '0x'||lower(hex(hash)) FROM blocks WHERE canonical = 1 AND number BETWEEN ?1 - 5 AND ?2 ORDER BY number",
    )
    .bind(fork)
    .bind(last)
    .fetch_all(&pool)
    .await
    .expect("canonical");
    let got: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(got, want);
    assert!(rows.iter().all(|r| r[16] == "true"));

    // --include-orphaned adds the replaced blocks, flagged.
    let out2 = tempfile::tempdir().expect("out");
    let mut o2 = opts(&db, &Table::Transactions, Format::Csv, out2.path());
    o2.include_orphaned = true;
    run_export(&o2);
    let all = read_all(out2.path(), &Table::Transactions, Format::Csv);
    assert_eq!(all, expected(&pool, &Table::Transactions, true).await);
    let o3 = ExportOptions { table: Table::Blocks, ..o2 };
    run_export(&o3);
    let blocks = read_all(out2.path(), &Table::Blocks, Format::Csv);
    assert_eq!(i64::try_from(blocks.iter().filter(|r| r[16] == "false").count()).expect("fits"), orphans);
    pool.close().await;
}

fn mtimes(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| {
            (e.file_name().to_string_lossy().into_owned(), e.metadata().and_then(|m| m.modified()).expect("mtime"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_chunks_are_skipped_and_clipped_ones_completed() {
    init_tracing();
    let db = fixture_db().await;
    let out = tempfile::tempdir().expect("out");
    let mut o = opts(&db, &Table::Blocks, Format::Parquet, out.path());
    o.chunk_size = 10;
    o.to = Some(45);
    let first = run_export(&o);
    assert_eq!(first.written.len(), 5, "0-9 … 40-45");
    assert!(out.path().join("blocks__00000040_to_00000045.parquet").exists());
    let before = mtimes(out.path());
    // Same range again: nothing rewritten.
    let again = run_export(&o);
    assert!(again.written.is_empty() && again.skipped.len() == 5, "{again:?}");
    assert_eq!(mtimes(out.path()), before);
    // A smaller range inside a finished chunk is covered by it.
    o.to = Some(44);
    assert!(run_export(&o).written.is_empty());
    // The whole stored range: only the clipped chunk and the new ones are written; the clipped
    // file is replaced by the complete one.
    o.to = None;
    let full = run_export(&o);
    assert_eq!(full.skipped.len(), 4);
    assert!(full.written.iter().any(|p| p.ends_with("blocks__00000040_to_00000049.parquet")), "{full:?}");
    assert!(!out.path().join("blocks__00000040_to_00000045.parquet").exists(), "superseded");
    let after = mtimes(out.path());
    for (name, t) in &before {
        if name != "blocks__00000040_to_00000045.parquet" {
            assert_eq!(after.get(name), Some(t), "{name} untouched");
        }
    }
    // --overwrite rewrites everything.
    o.overwrite = true;
    let over = run_export(&o);
    assert_eq!(over.skipped.len(), 0);
    assert_eq!(read_all(out.path(), &Table::Blocks, Format::Parquet).len() as u64, over.rows);
    // Bad ranges are refused with the reason.
    o.from = Some(50);
    o.to = Some(40);
    let e = export::export(&o, &CancellationToken::new()).expect_err("from > to");
    assert!(e.to_string().contains("--from"), "{e}");
    let t = ExportOptions { from: None, to: Some(3), ..opts(&db, &Table::ProviderRequests, Format::Csv, out.path()) };
    let e = export::export(&t, &CancellationToken::new()).expect_err("heights on a time table");
    assert!(e.to_string().contains("--since"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_written_with_a_gap_is_redone_once_the_gap_is_filled() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    let out = tempfile::tempdir().expect("out");
    let mut o = opts(&db, &Table::Blocks, Format::Csv, out.path());
    o.chunk_size = 10;
    o.to = Some(29);
    // Height 23 has no canonical block: its chunk is written without it, and marked.
    let hole = sqlx::query("UPDATE blocks SET canonical = 0 WHERE number = 23 AND canonical = 1")
        .execute(&pool)
        .await
        .expect("open a hole");
    assert_eq!(hole.rows_affected(), 1);
    let first = run_export(&o);
    assert_eq!((first.written.len(), first.missing_heights), (3, 1), "{first:?}");
    let marker = out.path().join(".blocks__00000020_to_00000029.csv.gaps");
    assert!(marker.exists(), "the gappy chunk is marked");
    assert_eq!(read_all(out.path(), &Table::Blocks, Format::Csv).len(), 29, "the marker is not data");
    // Still a hole: only that chunk is written again.
    let again = run_export(&o);
    assert_eq!((again.written.len(), again.skipped.len()), (1, 2), "{again:?}");
    assert!(again.written[0].ends_with("blocks__00000020_to_00000029.csv"));
    // The hole filled (as gap repair would): the chunk is rewritten whole and unmarked ...
    sqlx::query("UPDATE blocks SET canonical = 1 WHERE number = 23").execute(&pool).await.expect("fill");
    let filled = run_export(&o);
    assert_eq!((filled.written.len(), filled.missing_heights), (1, 0), "{filled:?}");
    assert!(!marker.exists(), "unmarked once whole");
    assert_eq!(read_all(out.path(), &Table::Blocks, Format::Csv).len(), 30);
    // ... and from then on skipped like any finished chunk.
    let settled = run_export(&o);
    assert!(settled.written.is_empty() && settled.skipped.len() == 3, "{settled:?}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_export_leaves_no_partial_file() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    // One block with 150,000 transactions of 120 bytes of calldata each: a chunk that takes a
    // while to write.
    add_transactions(&pool, 35, 150_001, 120).await;
    let out = tempfile::tempdir().expect("out");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "export".to_string(),
            "transactions".into(),
            "--db".into(),
            db.path.display().to_string(),
            "--out".into(),
            out.path().display().to_string(),
            "--format".into(),
            "csv".into(),
            "--chunk-size".into(),
            "10".into(),
        ];
        a.extend(extra.iter().map(|s| (*s).to_string()));
        a
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(args(&[]))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn export");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // Chunk 20-29 done means 30-39 (the big one) is being written: kill it there.
    loop {
        let line = lines.next().expect("export logs each chunk").expect("line");
        if line.contains("transactions__00000020_to_00000029.csv") {
            break;
        }
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let big = out.path().join("transactions__00000030_to_00000039.csv");
    let want_big = scalar_i64(
        &pool,
        "SELECT count(*) FROM transactions t JOIN blocks b ON b.id = t.block_id WHERE b.canonical = 1 AND b.number BETWEEN 30 AND 39",
    )
    .await;
    if big.exists() {
        // It finished before the kill: then it must be whole.
        assert_eq!(i64::try_from(read_csv(&big, &Table::Transactions).len()).expect("fits"), want_big);
    }
    for name in listing(out.path()).iter().filter(|n| !n.starts_with('.')) {
        let rows = read_csv(&out.path().join(name), &Table::Transactions);
        assert!(!rows.is_empty(), "{name} is whole");
    }
    // The re-run finishes the job, skips what was done and sweeps the dead run's temp file.
    let done_before = listing(out.path()).iter().filter(|n| !n.starts_with('.')).count();
    let status = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(args(&[]))
        .stderr(Stdio::piped())
        .output()
        .expect("re-run");
    let text = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{text}");
    assert!(text.contains(&format!("{done_before} chunks already done")), "{text}");
    assert!(listing(out.path()).iter().all(|n| !n.starts_with('.')), "no temp files left: {:?}", listing(out.path()));
    let rows = read_all(out.path(), &Table::Transactions, Format::Csv);
    assert_eq!(rows, expected(&pool, &Table::Transactions, false).await);
    assert_eq!(i64::try_from(read_csv(&big, &Table::Transactions).len()).expect("fits"), want_big);
    pool.close().await;
}

/// An export sink for tests: counts bytes, and either pauses now and then (so an export spans
/// seconds) or holds its first write until released (so a test can act mid-export).
#[derive(Default)]
struct TestSink {
    writes: u64,
    bytes: u64,
    pause_every: Option<u64>,
    hold_first: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
}

impl std::io::Write for TestSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes += 1;
        self.bytes += buf.len() as u64;
        if self.pause_every.is_some_and(|n| self.writes.is_multiple_of(n)) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if let Some((started, release)) = self.hold_first.take() {
            let _ = started.send(());
            let _ = release.recv();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_export_never_holds_back_the_wal_checkpoint() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    add_transactions(&pool, 20, 100_001, 40).await;
    let o = ExportOptions { to: Some(30), ..opts(&db, &Table::Transactions, Format::Csv, db.dir.path()) };
    let prepared = export::Prepared::new(o).expect("prepare");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let export = std::thread::spawn(move || {
        let mut sink = TestSink { pause_every: Some(200), ..TestSink::default() };
        let rows = prepared.write_to(&mut sink, &CancellationToken::new()).expect("export");
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        rows
    });
    // While the export runs: write, then checkpoint with TRUNCATE. A reader holding one
    // snapshot for the whole export would make every checkpoint report busy and keep the WAL.
    let wal = db.path.with_extension("db-wal");
    let mut checkpoints = 0;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('bench', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(checkpoints)
        .execute(&pool)
        .await
        .expect("write during export");
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&pool).await.expect("checkpoint");
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        assert_eq!(busy, 0, "checkpoint {checkpoints} was blocked by the export");
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "WAL truncated");
        checkpoints += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rows = export.join().expect("export thread");
    assert!(rows > 100_000, "{rows}");
    assert!(checkpoints >= 3, "the export ran long enough to test ({checkpoints} checkpoints)");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_streams_the_same_rows() {
    init_tracing();
    let db = fixture_db().await;
    let (server, store, base) = serve_db(&db, ApiOptions::default()).await;
    let pool = inspect(&db.path).await;
    let c = client();
    let dir = tempfile::tempdir().expect("dir");
    let decoded =
        blockstreamer::export::resolve(&db.path, blockstreamer::store::Access::ReadOnly, "evt_token_transfer")
            .expect("the fixture's decoded table");
    for (format, table) in [
        (Format::Parquet, Table::Blocks),
        (Format::Csv, Table::Transactions),
        (Format::Jsonl, Table::Blocks),
        (Format::Parquet, Table::Logs),
        (Format::Csv, Table::Receipts),
        (Format::Parquet, decoded.clone()),
        (Format::Jsonl, decoded),
    ] {
        let table = &table;
        let r =
            http::get(&c, &format!("{base}/v1/export/{}?format={}&from=10&to=40", table.name(), format.ext())).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers.get("content-type").and_then(|v| v.to_str().ok()), Some(format.content_type()));
        let path = dir.path().join(format!("{}__x.{}", table.name(), format.ext()));
        std::fs::write(&path, &r.body).expect("write");
        let got = match format {
            Format::Parquet => read_parquet(&path, table),
            Format::Csv => read_csv(&path, table),
            Format::Jsonl => read_jsonl(&path, table),
        };
        let want: Rows = expected(&pool, table, false)
            .await
            .into_iter()
            .filter(|r| r[0].parse::<u64>().is_ok_and(|n| (10..=40).contains(&n)))
            .collect();
        assert_eq!(got, want, "{format:?}");
        std::fs::remove_file(&path).expect("rm");
    }
    for (url, code) in [
        ("/v1/export/nope", 404),
        ("/v1/export/blocks?format=xml", 400),
        ("/v1/export/blocks?from=9&to=3", 400),
        ("/v1/export/blocks?since=1h", 400),
        ("/v1/export/provider_requests?since=yesterday", 400),
        ("/v1/export/blocks?include_orphaned=maybe", 400),
        ("/v1/export/blocks?limit=3", 400),
    ] {
        let r = http::get(&c, &format!("{base}{url}")).await;
        assert_eq!(r.status, code, "{url}: {}", r.text());
        r.error_code();
    }
    server.stop().await;
    store.close().await;
    pool.close().await;
}

fn sql_cli(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .arg("sql")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run sql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_command_outputs_and_refuses_the_escape_list() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.expect("checkpoint");
    pool.close().await;
    let before = sha256_file(&db.path);
    let files_before = listing(db.dir.path());
    let outside = tempfile::tempdir().expect("outside");
    let target = outside.path().join("x.db").display().to_string();
    let attached = db.dir.path().join("new.db").display().to_string();
    for attack in escape_attempts(&target, &attached) {
        let (ok, stdout, stderr) = sql_cli(&db.path, &["--", &attack]);
        assert!(!ok, "{attack:?} was accepted: {stdout}");
        assert!(stderr.contains("query refused") || stderr.contains("give a query"), "{attack:?}: {stderr}");
    }
    assert_eq!(sha256_file(&db.path), before, "the database file is unchanged");
    // A reader of a WAL database creates its -shm/-wal companions; nothing else may appear.
    let now: Vec<String> =
        listing(db.dir.path()).into_iter().filter(|n| !n.ends_with("-shm") && !n.ends_with("-wal")).collect();
    assert_eq!(now, files_before);
    assert!(listing(outside.path()).is_empty());

    // Output formats and parameters.
    let q = "SELECT number, hash FROM canonical_blocks WHERE number BETWEEN ?1 AND ?2 ORDER BY number";
    let (ok, csv, err) = sql_cli(&db.path, &[q, "--param", "3", "--param", "4", "--format", "csv"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "number,hash");
    assert!(lines[1].starts_with("3,0x") && lines[2].starts_with("4,0x"), "{csv}");
    let (ok, json, _) = sql_cli(&db.path, &[q, "--param", "3", "--param", "3", "--format", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["number"], 3);
    let (ok, table, _) = sql_cli(&db.path, &[q, "--param", "3", "--param", "4", "--format", "table"]);
    assert!(ok);
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("-------")), "{table}");
    let file = db.dir.path().join("q.sql");
    std::fs::write(&file, "SELECT count(*) AS n FROM canonical_blocks WHERE number < ?1").expect("write");
    let (ok, out, _) = sql_cli(&db.path, &["-f", file.to_str().expect("utf8"), "--param", "10", "--format", "csv"]);
    assert!(ok);
    assert_eq!(out, "n\r\n10\r\n");
    let (ok, _, err) = sql_cli(&db.path, &[q, "--param", "3"]);
    assert!(!ok && err.contains("parameters"), "{err}");
    // A runaway query is stopped by the deadline.
    let (ok, _, err) = sql_cli(
        &db.path,
        &[
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            "--timeout-ms",
            "300",
        ],
    );
    assert!(!ok && err.contains("limit"), "{err}");
}

/// Store a reorg the way ingest does, in one transaction: every canonical block above `fork`
/// is demoted, a replacement with a fresh hash and no transactions becomes canonical at each
/// of those heights, and the reorg is logged.
async fn reorg_above(pool: &SqlitePool, fork: i64) {
    let mut tx = pool.begin().await.expect("begin");
    for sql in [
        "CREATE TEMP TABLE demoted AS SELECT id FROM blocks WHERE canonical = 1 AND number > ?1",
        "UPDATE blocks SET canonical = 0 WHERE id IN (SELECT id FROM temp.demoted)",
        "INSERT INTO blocks (hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, base_fee_per_gas,
                             state_root, transactions_root, receipts_root, size, tx_count, full_txs, canonical,
                             hash_verified, provider_id, fetched_at_ms)
         SELECT randomblob(32), number, parent_hash, timestamp, miner, gas_used, gas_limit, base_fee_per_gas,
                state_root, transactions_root, receipts_root, size, 0, full_txs, 1, 0, provider_id, fetched_at_ms
         FROM blocks WHERE id IN (SELECT id FROM temp.demoted)",
        "INSERT INTO reorgs (detected_at_ms, depth, fork_number, fork_hash, old_tip_number, old_tip_hash,
                             new_tip_number, new_tip_hash, provider_id)
         SELECT 1, (SELECT count(*) FROM temp.demoted), ?1, randomblob(32), max(number), randomblob(32),
                max(number), randomblob(32), NULL FROM blocks",
        "DROP TABLE temp.demoted",
    ] {
        sqlx::query(sql).bind(fork).execute(&mut *tx).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    tx.commit().await.expect("commit reorg");
}

/// Start `o` as an HTTP export does (one stream) and return once its first write is held,
/// with the sender that lets it go on.
async fn export_held(
    o: ExportOptions,
) -> (std::thread::JoinHandle<Result<u64, export::ExportError>>, std::sync::mpsc::Sender<()>) {
    let prepared = export::Prepared::new(o).expect("prepare");
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let export = std::thread::spawn(move || {
        let sink = TestSink { hold_first: Some((started_tx, release_rx)), ..TestSink::default() };
        prepared.write_to(sink, &CancellationToken::new())
    });
    tokio::task::spawn_blocking(move || started.recv()).await.expect("join").expect("the export wrote");
    (export, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_during_an_http_export_ends_the_stream_with_an_error() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    // Block 20 gets 30,000 transactions: the range is read in several pages.
    add_transactions(&pool, 20, 30_000, 40).await;
    let o = ExportOptions { to: Some(30), ..opts(&db, &Table::Transactions, Format::Csv, db.dir.path()) };
    let (export, release) = export_held(o).await;
    // The first page has been read and partly written; the chain reorganises below block 20.
    reorg_above(&pool, 19).await;
    release.send(()).expect("release");
    match export.join().expect("export thread") {
        Err(export::ExportError::Reorged { fork, lo, hi }) => {
            assert_eq!((fork, hi), (19, 30), "lo {lo}");
        }
        other => panic!("a mixed-branch export must fail, got {other:?}"),
    }

    // A reorg above the range does not touch it: the export goes through. (Block 20's
    // transactions are orphaned now; with them the range still spans several pages.)
    let o = ExportOptions {
        to: Some(30),
        include_orphaned: true,
        ..opts(&db, &Table::Transactions, Format::Csv, db.dir.path())
    };
    let (export, release) = export_held(o).await;
    reorg_above(&pool, 35).await;
    release.send(()).expect("release");
    let rows = export.join().expect("export thread").expect("a reorg above the range leaves it alone");
    assert!(rows > 30_000, "{rows}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_a_reorg_touches_while_it_is_written_is_read_again() {
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    // Block 20 gets 100,000 transactions, so its chunk (16..31) takes a while to write.
    add_transactions(&pool, 20, 100_000, 40).await;
    let out = tempfile::tempdir().expect("out");
    let o = opts(&db, &Table::Transactions, Format::Csv, out.path());
    let export = std::thread::spawn(move || export::export(&o, &CancellationToken::new()));
    // Once the chunk's temp file exists its pages are being read: reorganise below block 20.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !listing(out.path()).iter().any(|n| n.starts_with(".transactions__00000016_to_") && n.contains(".tmp-")) {
        assert!(!export.is_finished(), "the export ended before the chunk was seen being written");
        assert!(std::time::Instant::now() < deadline, "chunk 16.. never started");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    reorg_above(&pool, 19).await;
    let summary = export.join().expect("export thread").expect("export");
    assert!(summary.reread_after_reorg >= 1, "the touched chunk was read again: {summary:?}");
    // What is on disk is the chain after the reorg, every chunk of it: block 20's 100,000
    // transactions went with the old branch.
    let rows = read_all(out.path(), &Table::Transactions, Format::Csv);
    assert_eq!(rows, expected(&pool, &Table::Transactions, false).await);
    assert!(listing(out.path()).iter().all(|n| !n.contains(".tmp-")), "no temp files left");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_export_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::{Duration, Instant, sleep, timeout};
    init_tracing();
    let db = fixture_db().await;
    let pool = inspect(&db.path).await;
    // ~40 MB of CSV: far more than the socket buffers and the body queue hold.
    add_transactions(&pool, 20, 100_000, 120).await;
    let opts = ApiOptions { stream_send_timeout: Duration::from_secs(2), ..ApiOptions::default() };
    let (server, store, base) = serve_db(&db, opts).await;
    // Two clients ask for everything, read the response head, then read nothing more: both
    // export slots are taken.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(b"GET /v1/export/transactions?format=csv HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.expect("send");
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("response head").expect("read");
            assert!(n > 0, "closed before the response head");
            head.extend_from_slice(&buf[..n]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
        stalled.push(s);
    }
    let c = client();
    let small = format!("{base}/v1/export/blocks?from=0&to=5&format=csv");
    assert_eq!(http::get(&c, &small).await.status, 503, "both slots are held");
    // Two seconds without a byte read and each is cut off: the slots come back while the
    // stalled connections are still open.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // Two at once: both slots must be free.
        let (a, b) = tokio::join!(http::get(&c, &small), http::get(&c, &small));
        if (a.status, b.status) == (200, 200) {
            assert_eq!(read_csv_bytes(&a.body).len(), 6, "blocks 0..=5");
            break;
        }
        for r in [&a, &b] {
            assert!(r.status == 200 || r.status == 503, "{}", r.text());
        }
        assert!(Instant::now() < deadline, "a stalled client kept its export slot");
        sleep(Duration::from_millis(50)).await;
    }
    // What a stalled client gets when it reads on at last is a broken transfer, not a short
    // file that ends like a complete one (the last chunk of a chunked body is `0\r\n\r\n`).
    for mut s in stalled {
        let mut got = Vec::new();
        // Ok at the end of the data, or a reset: either way the server closed it.
        let _ = timeout(Duration::from_secs(30), s.read_to_end(&mut got)).await.expect("the server closed it");
        assert!(
            !got.ends_with(b"\r\n0\r\n\r\n"),
            "a cut-off export must not end like a whole one ({} bytes read after the head)",
            got.len()
        );
    }
    drop(store);
    pool.close().await;
}

/// Data rows of a CSV body (the header line left out).
fn read_csv_bytes(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body).lines().skip(1).map(str::to_string).collect()
}
