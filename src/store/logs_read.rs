//! The read side of logs, receipts and decoded events for the API and the log stream: logs by
//! an `eth_getLogs`-style filter with a (block, log index) cursor, a block's or a transaction's
//! logs, a receipt, the decoded tables and their rows, decode errors.

use alloy_primitives::hex;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, ValueRef};

use super::{Store, StoreError};
use crate::types::{from_sql, to_sql};

/// A log as the API serves it (cryo's names; `topics` as `eth_getLogs` has them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRow {
    pub block_number: u64,
    pub block_hash: String,
    pub block_timestamp: u64,
    pub transaction_index: u64,
    pub transaction_hash: String,
    pub log_index: u64,
    pub address: String,
    pub topics: Vec<String>,
    pub data: String,
}

/// A receipt as the API serves it, with its logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptRow {
    pub transaction_hash: String,
    pub transaction_index: u64,
    pub block_number: u64,
    pub block_hash: String,
    pub canonical: bool,
    pub from: Option<String>,
    pub to: Option<String>,
    pub status: Option<u8>,
    pub post_state: Option<String>,
    #[serde(rename = "type")]
    pub tx_type: u8,
    pub gas_used: u64,
    pub cumulative_gas_used: u64,
    pub effective_gas_price: Option<String>,
    pub contract_address: Option<String>,
    pub blob_gas_used: Option<u64>,
    pub blob_gas_price: Option<String>,
    pub log_count: u64,
    pub logs: Vec<LogRow>,
}

/// An `eth_getLogs`-style filter over stored logs: any of `addresses` (all when empty), and per
/// position any of `topics[i]`; heights `from..=to`, after `after` (block, log index).
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub addresses: Vec<[u8; 20]>,
    pub topics: [Vec<[u8; 32]>; 4],
    pub from: u64,
    pub to: u64,
    pub after: Option<(u64, u64)>,
    pub limit: u32,
}

/// One registered decoded table, for `/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventTableRow {
    pub name: String,
    pub view: String,
    pub contract: String,
    pub signature: String,
    pub addresses: Vec<String>,
    pub start_block: u64,
    pub columns: Value,
    /// Heights of stored logs still to decode (a table made after its logs), if any.
    pub backfill: Option<(u64, u64)>,
}

/// One log that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodeErrorRow {
    pub block_number: u64,
    pub block_hash: String,
    pub transaction_index: u64,
    pub transaction_hash: String,
    pub log_index: u64,
    pub address: String,
    pub topic0: Option<String>,
    pub event_table: String,
    pub error: String,
}

/// A comparison on one column of a decoded view (`/v1/events/{table}?<column>=<value>`).
#[derive(Debug, Clone, PartialEq)]
pub enum EventFilter {
    Int(i64),
    Text(String),
}

fn hex_json(list: &[impl AsRef<[u8]>]) -> Option<String> {
    (!list.is_empty()).then(|| Value::Array(list.iter().map(|x| Value::String(hex::encode(x))).collect()).to_string())
}

fn u(r: &SqliteRow, i: usize, what: &'static str) -> Result<u64, StoreError> {
    Ok(from_sql(what, r.try_get(i)?)?)
}

pub(super) fn log_row(r: &SqliteRow) -> Result<LogRow, StoreError> {
    let mut topics = Vec::with_capacity(4);
    for k in 7..11 {
        if let Some(t) = r.try_get::<Option<Vec<u8>>, _>(k)? {
            topics.push(hex::encode_prefixed(t));
        }
    }
    Ok(LogRow {
        block_number: u(r, 0, "block number")?,
        block_hash: r.try_get(1)?,
        block_timestamp: u(r, 2, "timestamp")?,
        transaction_index: u(r, 3, "transaction index")?,
        transaction_hash: r.try_get(4)?,
        log_index: u(r, 5, "log index")?,
        address: r.try_get(6)?,
        topics,
        data: hex::encode_prefixed(r.try_get::<Vec<u8>, _>(11)?),
    })
}

impl Store {
    /// Logs of canonical blocks matching `q`, in (block, log index) order.
    pub async fn logs_page(&self, q: &LogQuery) -> Result<Vec<LogRow>, StoreError> {
        let sql = if !q.addresses.is_empty() {
            include_str!("../../sql/logs/by_address.sql")
        } else if !q.topics[0].is_empty() {
            include_str!("../../sql/logs/by_topic0.sql")
        } else {
            include_str!("../../sql/logs/by_range.sql")
        };
        let (after_block, after_log) = match q.after {
            Some((b, l)) => (to_sql("cursor", b)?, to_sql("cursor", l)?),
            None => (-1, -1),
        };
        let mut query = sqlx::query(sql).bind(hex_json(&q.addresses));
        for t in &q.topics {
            query = query.bind(hex_json(t));
        }
        let rows = query
            .bind(to_sql("from", q.from)?)
            .bind(to_sql("to", q.to)?)
            .bind(after_block)
            .bind(after_log)
            .bind(i64::from(q.limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(log_row).collect()
    }

    /// Every stored log of the block with this hash.
    pub async fn block_logs(&self, hash: &[u8; 32]) -> Result<Vec<LogRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/logs/of_block.sql"))
            .bind(hash.as_slice())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(log_row).collect()
    }

    /// The receipt of a transaction, canonical copy first, with its stored logs.
    pub async fn receipt(&self, tx_hash: &[u8; 32]) -> Result<Vec<ReceiptRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/logs/receipt_by_tx.sql"))
            .bind(tx_hash.as_slice())
            .fetch_all(&self.reader)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let block_hash: Vec<u8> = r.try_get(14)?;
            let idx: i64 = r.try_get(3)?;
            let logs = sqlx::query(include_str!("../../sql/logs/logs_of_tx.sql"))
                .bind(&block_hash)
                .bind(idx)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(log_row)
                .collect::<Result<Vec<_>, _>>()?;
            let opt_u = |i: usize| -> Result<Option<u64>, StoreError> {
                r.try_get::<Option<i64>, _>(i)?.map(|v| from_sql("receipt field", v)).transpose().map_err(Into::into)
            };
            out.push(ReceiptRow {
                transaction_hash: hex::encode_prefixed(tx_hash),
                transaction_index: from_sql("transaction index", idx)?,
                block_number: u(r, 0, "block number")?,
                block_hash: r.try_get(1)?,
                canonical: r.try_get::<i64, _>(2)? == 1,
                from: r.try_get(15)?,
                to: r.try_get(16)?,
                status: r.try_get::<Option<i64>, _>(4)?.map(|s| u8::from(s == 1)),
                post_state: r.try_get(5)?,
                tx_type: u8::try_from(r.try_get::<i64, _>(6)?).map_err(|_| StoreError::Corrupt("tx type".into()))?,
                gas_used: u(r, 7, "gas used")?,
                cumulative_gas_used: u(r, 8, "cumulative gas used")?,
                effective_gas_price: r.try_get(9)?,
                contract_address: r.try_get(10)?,
                blob_gas_used: opt_u(11)?,
                blob_gas_price: r.try_get(12)?,
                log_count: u(r, 13, "log count")?,
                logs,
            });
        }
        Ok(out)
    }

    /// Every registered decoded table.
    pub async fn event_tables(&self) -> Result<Vec<EventTableRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/index/tables_all.sql")).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                let addresses: String = r.try_get(3)?;
                let cursor: Option<i64> = r.try_get(6)?;
                let until: Option<i64> = r.try_get(7)?;
                let backfill = match (cursor, until) {
                    (Some(c), Some(u)) if c < u => Some((from_sql("cursor", c + 1)?, from_sql("until", u)?)),
                    _ => None,
                };
                Ok(EventTableRow {
                    view: format!("{name}_view"),
                    name,
                    contract: r.try_get(1)?,
                    signature: r.try_get(2)?,
                    addresses: addresses.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect(),
                    start_block: u(r, 4, "start block")?,
                    columns: serde_json::from_str(&r.try_get::<String, _>(5)?).unwrap_or(Value::Null),
                    backfill,
                })
            })
            .collect()
    }

    /// Rows of a registered decoded table's view in heights `from..=to`, after (block, log
    /// index), where each named column equals its value; at most `limit`. `table` must be a
    /// name [`event_tables`](Self::event_tables) returned and every column one of its view's
    /// (the caller checks both; they are quoted here, values are bound).
    pub async fn event_rows(
        &self,
        table: &EventTableRow,
        filters: &[(String, EventFilter)],
        (from, to): (u64, u64),
        after: Option<(u64, u64)>,
        limit: u32,
    ) -> Result<Vec<Map<String, Value>>, StoreError> {
        let mut sql = format!(
            "SELECT * FROM \"{}\" WHERE block_number BETWEEN ?1 AND ?2 AND (block_number, log_index) > (?3, ?4)",
            table.view
        );
        for (k, (col, _)) in filters.iter().enumerate() {
            sql.push_str(&format!(" AND \"{col}\" = ?{}", k + 6));
        }
        sql.push_str(" ORDER BY block_number, log_index LIMIT ?5");
        let (ab, al) = match after {
            Some((b, l)) => (to_sql("cursor", b)?, to_sql("cursor", l)?),
            None => (-1, -1),
        };
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(to_sql("from", from)?)
            .bind(to_sql("to", to)?)
            .bind(ab)
            .bind(al)
            .bind(i64::from(limit));
        for (_, f) in filters {
            q = match f {
                EventFilter::Int(i) => q.bind(*i),
                EventFilter::Text(t) => q.bind(t.clone()),
            };
        }
        let rows = q.fetch_all(&self.reader).await?;
        rows.iter().map(json_row).collect()
    }

    /// Logs that did not decode, newest first (optionally of one table), before (block, log index).
    pub async fn decode_errors(
        &self,
        table: Option<&str>,
        before: Option<(u64, u64)>,
        limit: u32,
    ) -> Result<Vec<DecodeErrorRow>, StoreError> {
        let (bb, bl) = match before {
            Some((b, l)) => (to_sql("cursor", b)?, to_sql("cursor", l)?),
            None => (i64::MAX, i64::MAX),
        };
        let rows = sqlx::query(include_str!("../../sql/logs/decode_errors_page.sql"))
            .bind(table)
            .bind(bb)
            .bind(bl)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DecodeErrorRow {
                    block_number: u(r, 0, "block number")?,
                    block_hash: r.try_get(1)?,
                    transaction_index: u(r, 2, "transaction index")?,
                    transaction_hash: r.try_get(3)?,
                    log_index: u(r, 4, "log index")?,
                    address: r.try_get(5)?,
                    topic0: r.try_get(6)?,
                    event_table: r.try_get(7)?,
                    error: r.try_get(8)?,
                })
            })
            .collect()
    }
}

/// A view row as a JSON object: integers as numbers, text as strings, blobs as 0x hex, reals as
/// numbers. A wide integer's sortable column is replaced by its exact decimal text.
fn json_row(r: &SqliteRow) -> Result<Map<String, Value>, StoreError> {
    use sqlx::Column;
    let mut out = Map::new();
    let names: Vec<String> = r.columns().iter().map(|c| c.name().to_string()).collect();
    for (i, name) in names.iter().enumerate() {
        if names.contains(&format!("{name}_dec")) {
            continue; // shown as its `_dec` text under its own name below
        }
        let raw = r.try_get_raw(i)?;
        let v = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().to_string().as_str() {
                "INTEGER" => Value::from(r.try_get::<i64, _>(i)?),
                "REAL" => serde_json::Number::from_f64(r.try_get::<f64, _>(i)?).map_or(Value::Null, Value::Number),
                "BLOB" => Value::String(hex::encode_prefixed(r.try_get::<Vec<u8>, _>(i)?)),
                _ => Value::String(r.try_get::<String, _>(i)?),
            }
        };
        match name.strip_suffix("_dec") {
            Some(base) if names.iter().any(|n| n == base) => {
                out.insert(base.to_string(), v);
            }
            _ => {
                out.insert(name.clone(), v);
            }
        }
    }
    Ok(out)
}
