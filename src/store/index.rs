//! The store's side of `[index]`: the log selection in use (a change leaves the blocks whose
//! logs do not cover it waiting, as gaps), and the decoded event tables — made from the ABI at
//! start-up, registered in `event_tables`, their rows written in the block's transaction by both
//! writers, and filled from stored logs when a table is new.
//!
//! The DDL of a decoded table is built here rather than kept in `sql/`: its columns come from
//! the ABI. Every name in it is checked to be `[a-z0-9_]` (see `index::abi`) and quoted.

use std::sync::Arc;

use alloy_primitives::{Address, B256, LogData};
use sqlx::{AssertSqlSafe, Row};

use super::params::Param;
use super::{Store, StoreError, classify};
use crate::index::{ColumnKind, DecodedLog, EventTable, Indexing, SqlValue};
use crate::model::Block;
use crate::types::{from_sql, now_ms, to_sql};

/// What the writers need of `[index]`: the selection id blocks are stored with, and each
/// decoded table's insert statement (index = `DecodedLog::table`).
#[derive(Debug, Default)]
pub(super) struct IndexSql {
    pub(super) selection: i64,
    pub(super) tables: Vec<TableSql>,
}

impl IndexSql {
    pub(super) fn new() -> Self {
        Self { selection: 1, tables: Vec::new() }
    }
}

#[derive(Debug)]
pub(super) struct TableSql {
    pub(super) name: String,
    /// One-row INSERT (built once per table and process; the multi-row cache keys on it).
    pub(super) insert: &'static str,
}

/// Which receipts state is enough for the mode: 1 receipts, 2 filtered logs, 0 nothing stored.
fn mode(ix: &Indexing) -> i64 {
    if ix.receipts {
        1
    } else if ix.stores_logs() {
        2
    } else {
        0
    }
}

/// A decoded table whose stored logs still have to be decoded: heights `from..=until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeBackfill {
    pub table: u16,
    pub from: u64,
    pub until: u64,
}

impl Store {
    /// Take `ix` as what is indexed: record the selection (a change leaves the blocks whose logs
    /// do not cover it waiting for them), make or remake the decoded tables, and return the
    /// tables whose stored logs must be decoded.
    pub async fn use_indexing(&self, ix: &Indexing) -> Result<Vec<DecodeBackfill>, StoreError> {
        let fingerprint = ix.selection.fingerprint();
        let selection: i64 = sqlx::query_scalar(include_str!("../../sql/index/selection_upsert.sql"))
            .bind(&fingerprint)
            .bind(now_ms())
            .fetch_one(&self.writer)
            .await
            .map_err(classify)?;
        let m = mode(ix);
        let changed =
            self.meta("logs_selection").await? != Some(selection) || self.meta("receipts_indexed").await? != Some(m);
        if changed && m > 0 {
            let r = sqlx::query(include_str!("../../sql/index/selection_invalidate.sql"))
                .bind(selection)
                .bind(if m == 2 { 2 } else { 1 })
                .execute(&self.writer)
                .await
                .map_err(classify)?;
            if r.rows_affected() > 0 {
                tracing::info!(blocks = r.rows_affected(), selection = %fingerprint, "the log selection changed: stored blocks wait for their logs again");
            }
        }
        self.set_meta("logs_selection", selection).await?;
        self.set_meta("receipts_indexed", m).await?;
        let mut tables = Vec::with_capacity(ix.tables.len());
        let mut backfills = Vec::new();
        for (i, t) in ix.tables.iter().enumerate() {
            if let Some(b) = self.make_table(t).await? {
                let table = u16::try_from(i).map_err(|_| StoreError::Corrupt("too many decoded tables".into()))?;
                backfills.push(DecodeBackfill { table, from: b.0, until: b.1 });
            }
            // Made once per table per process: leaked so the multi-row statement cache can key on it.
            let insert: &'static str = Box::leak(insert_sql(t).into_boxed_str());
            tables.push(TableSql { name: t.name.clone(), insert });
        }
        *self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(IndexSql { selection, tables });
        Ok(backfills)
    }

    /// The writers' view of `[index]` now.
    pub(super) fn index_sql(&self) -> Arc<IndexSql> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Create `t` (or drop and recreate it when its definition changed; the raw logs stay, so
    /// nothing is lost). Returns the heights still to decode from stored logs, if any.
    async fn make_table(&self, t: &EventTable) -> Result<Option<(u64, u64)>, StoreError> {
        let addresses = address_list(&t.addresses);
        let start = to_sql("start_block", t.start_block)?;
        let row = sqlx::query(include_str!("../../sql/index/table_get.sql"))
            .bind(&t.name)
            .fetch_optional(&self.writer)
            .await?;
        if let Some(r) = &row {
            let same = r.try_get::<String, _>(0)? == t.signature()
                && r.try_get::<String, _>(1)? == addresses
                && r.try_get::<i64, _>(2)? == start;
            if same {
                let cursor: Option<i64> = r.try_get(3)?;
                let until: Option<i64> = r.try_get(4)?;
                return match (cursor, until) {
                    (Some(c), Some(u)) if c < u => Ok(Some((from_sql("cursor", c + 1)?, from_sql("until", u)?))),
                    _ => Ok(None),
                };
            }
            tracing::info!(table = %t.name, "decoded table definition changed: remade from the stored logs");
        }
        let until: Option<i64> =
            sqlx::query_scalar(include_str!("../../sql/index/max_block_number.sql")).fetch_one(&self.writer).await?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for stmt in ddl(t, row.is_some()) {
            sqlx::query(AssertSqlSafe(stmt)).execute(&mut *tx).await.map_err(classify)?;
        }
        let columns: Vec<serde_json::Value> = t
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "type": c.ty, "indexed": c.indexed, "kind": format!("{:?}", c.kind)}))
            .collect();
        let cursor = until.map(|_| start - 1);
        sqlx::query(include_str!("../../sql/index/table_put.sql"))
            .bind(&t.name)
            .bind(&t.contract)
            .bind(t.signature())
            .bind(t.topic0.as_slice())
            .bind(&addresses)
            .bind(start)
            .bind(serde_json::Value::Array(columns).to_string())
            .bind(now_ms())
            .bind(cursor)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        match until {
            Some(u) if u >= start => Ok(Some((t.start_block, from_sql("until", u)?))),
            _ => Ok(None),
        }
    }

    /// Decode the stored logs of table `t` (as `ix.tables[t]`) in heights `from..=to` and store
    /// the rows and errors, moving its backfill cursor to `to` (`done`: clear it), in one
    /// transaction. Returns (rows, errors).
    pub async fn decode_stored(
        &self,
        ix: &Indexing,
        t: u16,
        from: u64,
        to: u64,
        done: bool,
    ) -> Result<(u64, u64), StoreError> {
        let Some(table) = ix.tables.get(usize::from(t)) else { return Ok((0, 0)) };
        let mut found: Vec<(i64, i64, DecodedLog)> = Vec::new();
        for a in &table.addresses {
            let rows = sqlx::query(include_str!("../../sql/index/backfill_logs.sql"))
                .bind(a.as_slice())
                .bind(table.topic0.as_slice())
                .bind(to_sql("from", from)?)
                .bind(to_sql("to", to)?)
                .fetch_all(&self.reader)
                .await?;
            for r in rows {
                let mut topics = Vec::with_capacity(4);
                for k in 3..7 {
                    if let Some(t) = r.try_get::<Option<Vec<u8>>, _>(k)? {
                        topics.push(
                            B256::try_from(t.as_slice()).map_err(|_| StoreError::Corrupt("topic length".into()))?,
                        );
                    }
                }
                let data = LogData::new_unchecked(topics, r.try_get::<Vec<u8>, _>(7)?.into());
                let log_index: i64 = r.try_get(1)?;
                let decoded = DecodedLog {
                    table: t,
                    log_index: u32::try_from(log_index).map_err(|_| StoreError::Corrupt("log index".into()))?,
                    values: table.decode(&data),
                };
                found.push((r.try_get(0)?, r.try_get(2)?, decoded));
            }
        }
        let index = self.index_sql();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        let counts = insert_decoded_rows(&mut tx, &index, found.iter().map(|(id, n, d)| (*id, *n, d))).await?;
        sqlx::query(include_str!("../../sql/index/backfill_cursor.sql"))
            .bind(&table.name)
            .bind(if done { None } else { Some(to_sql("to", to)?) })
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        if counts.0 > 0 {
            self.notify_change();
        }
        Ok(counts)
    }
}

/// 0x addresses, lowercase, sorted, comma-separated.
fn address_list(a: &[Address]) -> String {
    let mut v: Vec<String> = a.iter().map(|x| x.to_string().to_ascii_lowercase()).collect();
    v.sort();
    v.join(",")
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The parameter columns of the base table, in binding order.
fn param_columns(t: &EventTable) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for c in &t.columns {
        out.push((c.name.clone(), c.kind.sql_type()));
        if matches!(c.kind, ColumnKind::Big { .. }) {
            out.push((format!("{}_dec", c.name), "TEXT"));
        }
    }
    out
}

/// The statements that make `t`: table, indexes (height; each indexed parameter), view.
fn ddl(t: &EventTable, drop_first: bool) -> Vec<String> {
    let name = quoted(&t.name);
    let view = quoted(&format!("{}_view", t.name));
    let mut out = Vec::new();
    if drop_first {
        out.push(format!("DROP VIEW IF EXISTS {view}"));
        out.push(format!("DROP TABLE IF EXISTS {name}"));
        out.push(format!("DELETE FROM decode_errors WHERE event_table = '{}'", t.name));
    }
    let cols: Vec<String> = param_columns(t).iter().map(|(n, ty)| format!("    {} {ty}", quoted(n))).collect();
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n    block_id INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,\n    log_index INTEGER NOT NULL,\n    block_number INTEGER NOT NULL,\n{},\n    PRIMARY KEY (block_id, log_index)\n) STRICT, WITHOUT ROWID",
        cols.join(",\n")
    ));
    out.push(format!("CREATE INDEX IF NOT EXISTS {} ON {name} (block_number)", quoted(&format!("{}_number", t.name))));
    for c in t.columns.iter().filter(|c| c.indexed) {
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {name} ({}, block_number)",
            quoted(&format!("{}_{}", t.name, c.name)),
            quoted(&c.name)
        ));
    }
    let mut shown = Vec::new();
    for c in &t.columns {
        let col = format!("e.{}", quoted(&c.name));
        if c.kind.is_blob() {
            shown.push(format!(
                "CASE WHEN {col} IS NULL THEN NULL ELSE '0x' || lower(hex({col})) END AS {}",
                quoted(&c.name)
            ));
        } else {
            shown.push(format!("{col} AS {}", quoted(&c.name)));
        }
        if matches!(c.kind, ColumnKind::Big { .. }) {
            let dec = quoted(&format!("{}_dec", c.name));
            shown.push(format!("e.{dec} AS {dec}"));
        }
    }
    out.push(format!(
        "CREATE VIEW IF NOT EXISTS {view} AS\nSELECT\n    e.block_number,\n    '0x' || lower(hex(b.hash)) AS block_hash,\n    b.timestamp AS block_timestamp,\n    l.tx_idx AS transaction_index,\n    '0x' || lower(hex(l.tx_hash)) AS transaction_hash,\n    e.log_index,\n    '0x' || lower(hex(l.address)) AS address,\n    {}\nFROM {name} e\nJOIN blocks b ON b.id = e.block_id\nJOIN logs l ON l.block_id = e.block_id AND l.log_index = e.log_index\nWHERE b.canonical = 1",
        shown.join(",\n    ")
    ));
    out
}

/// The one-row INSERT of `t` (the multi-row helper repeats its VALUES tuple).
fn insert_sql(t: &EventTable) -> String {
    let cols = param_columns(t);
    let names: Vec<String> = cols.iter().map(|(n, _)| quoted(n)).collect();
    let marks = vec!["?"; cols.len() + 3].join(", ");
    format!(
        "-- decoded rows of {}\nINSERT INTO {} (block_id, log_index, block_number, {})\nVALUES ({marks})\nON CONFLICT DO NOTHING",
        t.name,
        quoted(&t.name),
        names.join(", ")
    )
}

/// Insert decoded rows (many per statement, per table) and decode errors: (block row id,
/// height, decoded log). Returns (rows, errors).
pub(super) async fn insert_decoded_rows<'a>(
    tx: &mut sqlx::SqliteConnection,
    index: &IndexSql,
    rows: impl Iterator<Item = (i64, i64, &'a DecodedLog)>,
) -> Result<(u64, u64), StoreError> {
    let mut per_table: Vec<Vec<RowRef<'a>>> = index.tables.iter().map(|_| Vec::new()).collect();
    let mut bad = 0u64;
    for (id, number, d) in rows {
        let Some(table) = index.tables.get(usize::from(d.table)) else { continue };
        match &d.values {
            Ok(values) => per_table[usize::from(d.table)].push((id, number, d.log_index, values.as_slice())),
            Err(e) => {
                sqlx::query(include_str!("../../sql/index/insert_decode_error.sql"))
                    .bind(id)
                    .bind(i64::from(d.log_index))
                    .bind(&table.name)
                    .bind(e)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                bad += 1;
            }
        }
    }
    let mut ok = 0u64;
    for (table, rows) in index.tables.iter().zip(&per_table) {
        for chunk in rows.chunks(DECODED_ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(AssertSqlSafe(super::multirow::statement(table.insert, chunk.len())));
            for (id, number, li, values) in chunk {
                q = super::params::bind(q, row_params(*id, *number, *li, values));
            }
            q.execute(&mut *tx).await.map_err(classify)?;
            ok += chunk.len() as u64;
        }
    }
    if bad > 0 {
        metrics::counter!("blockstreamer_decode_errors_total").increment(bad);
    }
    metrics::counter!("blockstreamer_events_decoded_total").increment(ok);
    Ok((ok, bad))
}

/// One decoded row to insert: block row id, height, log index, values.
type RowRef<'a> = (i64, i64, u32, &'a [SqlValue]);

/// Rows per multi-row INSERT of a decoded table (a wide event binds a few dozen values a row;
/// this keeps a statement under SQLite's 32,766 variables).
const DECODED_ROWS_PER_STATEMENT: usize = 128;

/// The bound values of one decoded row.
pub(super) fn row_params(id: i64, number: i64, log_index: u32, values: &[SqlValue]) -> Vec<Param<'_>> {
    let mut p = Vec::with_capacity(values.len() + 3);
    p.push(Param::Int(id));
    p.push(Param::Int(i64::from(log_index)));
    p.push(Param::Int(number));
    p.extend(values.iter().map(Param::of));
    p
}

/// The decoded rows of stored blocks: (block row id, height, decoded log).
pub(super) fn decoded_of<'a>(
    blocks: impl Iterator<Item = (i64, &'a Block)>,
) -> Result<Vec<(i64, i64, &'a DecodedLog)>, StoreError> {
    let mut out = Vec::new();
    for (id, b) in blocks {
        let n = to_sql("block number", b.number)?;
        out.extend(b.decoded.iter().map(|d| (id, n, d)));
    }
    Ok(out)
}
