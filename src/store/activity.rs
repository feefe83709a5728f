//! What the indexer did lately, for the dashboard: logs and decoded events per recent block,
//! receipts and logs answers refused per provider, decode errors.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError};
use crate::types::{from_sql, to_sql};

/// One recent canonical block: its logs (None: not stored yet) and decoded events per table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockActivity {
    pub number: u64,
    pub logs: Option<u64>,
    pub events: BTreeMap<String, u64>,
}

/// Receipts or logs answers a provider gave that were refused (forged, withheld, inconsistent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedAnswers {
    pub provider: String,
    pub method: String,
    pub refused: u64,
    pub last_ms: i64,
    pub last_error: Option<String>,
}

/// The indexer's recent activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexActivity {
    pub blocks: Vec<BlockActivity>,
    pub refused: Vec<RefusedAnswers>,
    pub decode_errors: u64,
}

impl Store {
    /// The last `blocks` canonical blocks' logs and events, and the answers refused since
    /// `since_ms`.
    pub async fn index_activity(&self, blocks: u64, since_ms: i64) -> Result<IndexActivity, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/index/activity_logs.sql"))
            .bind(to_sql("blocks", blocks)?)
            .fetch_all(&self.reader)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let logs: Option<i64> = r.try_get(2)?;
            out.push(BlockActivity {
                number: from_sql("number", r.try_get(0)?)?,
                logs: logs.map(|n| from_sql("logs", n)).transpose()?,
                events: BTreeMap::new(),
            });
        }
        if let Some(first) = out.first().map(|b| b.number) {
            self.count_events(&mut out, first).await?;
        }
        let refused = sqlx::query(include_str!("../../sql/index/activity_refused.sql"))
            .bind(since_ms)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| {
                Ok(RefusedAnswers {
                    provider: r.try_get(0)?,
                    method: r.try_get(1)?,
                    refused: from_sql("refused", r.try_get(2)?)?,
                    last_ms: r.try_get(3)?,
                    last_error: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let errors: i64 =
            sqlx::query_scalar(include_str!("../../sql/index/decode_error_count.sql")).fetch_one(&self.reader).await?;
        Ok(IndexActivity { blocks: out, refused, decode_errors: from_sql("decode errors", errors)? })
    }

    /// Decoded rows per block from `first` up, for every decoded table.
    async fn count_events(&self, blocks: &mut [BlockActivity], first: u64) -> Result<(), StoreError> {
        let tables: Vec<String> =
            sqlx::query_scalar(include_str!("../../sql/export/event_table_names.sql")).fetch_all(&self.reader).await?;
        for t in tables {
            // Table names are the ones this build makes (letters, digits, `_`): safe to splice.
            if !crate::index::is_plain_name(&t) {
                continue;
            }
            let sql = format!(
                "SELECT e.block_number, count(*) FROM \"{t}\" e JOIN blocks b ON b.id = e.block_id \
                 WHERE e.block_number >= ?1 AND b.canonical = 1 GROUP BY e.block_number"
            );
            let rows = sqlx::query(AssertSqlSafe(sql)).bind(to_sql("first", first)?).fetch_all(&self.reader).await?;
            for r in &rows {
                let n: u64 = from_sql("number", r.try_get(0)?)?;
                let c: u64 = from_sql("count", r.try_get(1)?)?;
                if let Some(b) = blocks.iter_mut().find(|b| b.number == n) {
                    b.events.insert(t.clone(), c);
                }
            }
        }
        Ok(())
    }
}
