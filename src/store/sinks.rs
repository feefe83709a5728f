//! Where each broker sink stands (`sink_positions`): read at start, advanced only after the
//! broker acknowledged, listed for `/v1/sinks`.

use alloy_primitives::B256;
use sqlx::{ConnectOptions, Connection, Row};

use super::sqlite::classify;
use super::{Store, StoreError};
use crate::types::{from_sql, to_sql};

/// A sink's acknowledged position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkPosition {
    /// The last block all of whose messages were acknowledged (`None`: nothing yet).
    pub block: Option<(u64, B256)>,
    pub messages: u64,
    /// The broker's sequence of the last acknowledged message.
    pub stream_seq: u64,
    /// The last block of a batch sent and not (yet) acknowledged: after a crash, the broker may
    /// hold messages up to it.
    pub pending: Option<(u64, B256)>,
}

impl SinkPosition {
    /// Stored blocks not published yet, with the stored head at `stored_head`.
    pub fn backlog(&self, stored_head: Option<u64>) -> Option<u64> {
        let head = stored_head?;
        Some(match self.block {
            Some((n, _)) => head.saturating_sub(n),
            None => head + 1,
        })
    }
}

/// A sink's row, for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRow {
    pub sink: String,
    pub position: SinkPosition,
    pub updated_ms: i64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

fn link(r: &sqlx::sqlite::SqliteRow, at: usize) -> Result<Option<(u64, B256)>, StoreError> {
    let n: Option<i64> = r.try_get(at)?;
    let h: Option<Vec<u8>> = r.try_get(at + 1)?;
    Ok(match (n, h) {
        (Some(n), Some(h)) => Some((from_sql("sink height", n)?, super::blocks::hash32(&h)?)),
        _ => None,
    })
}

fn position(r: &sqlx::sqlite::SqliteRow, at: usize, pending_at: Option<usize>) -> Result<SinkPosition, StoreError> {
    Ok(SinkPosition {
        block: link(r, at)?,
        messages: from_sql("sink messages", r.try_get(at + 2)?)?,
        stream_seq: from_sql("sink stream sequence", r.try_get(at + 3)?)?,
        pending: match pending_at {
            Some(p) => link(r, p)?,
            None => None,
        },
    })
}

fn link_sql(l: Option<(u64, B256)>) -> Result<(Option<i64>, Option<Vec<u8>>), StoreError> {
    Ok(match l {
        Some((n, h)) => (Some(to_sql("sink height", n)?), Some(h.to_vec())),
        None => (None, None),
    })
}

impl Store {
    /// The position of `sink`, registering it (with no position) on first use.
    pub async fn sink_position(&self, sink: &str) -> Result<SinkPosition, StoreError> {
        sqlx::query(include_str!("../../sql/sink/register.sql"))
            .bind(sink)
            .bind(crate::types::now_ms())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        let r = sqlx::query(include_str!("../../sql/sink/position_get.sql")).bind(sink).fetch_one(&self.writer).await?;
        position(&r, 0, Some(4))
    }

    /// Before publishing a batch that ends at `to`: the broker may hold up to `to` from now on.
    pub async fn set_sink_pending(&self, sink: &str, to: (u64, B256)) -> Result<(), StoreError> {
        let (n, h) = link_sql(Some(to))?;
        sqlx::query(include_str!("../../sql/sink/pending_set.sql"))
            .bind(sink)
            .bind(n)
            .bind(h)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Forget where `sink` stands in the file at `path` so it publishes again: from the first
    /// stored block (`from = None`), or from height `from` (the canonical block below it
    /// becomes the position). One connection, no lifecycle marks, so it is safe beside the
    /// `run` that writes the file (whose sink picks the reset up). False when the sink has no row.
    pub async fn reset_sink_in(path: &std::path::Path, sink: &str, from: Option<u64>) -> Result<bool, StoreError> {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || super::sqlite::check_readable(&owned, super::Access::ReadOnly))
            .await
            .map_err(|e| StoreError::Bulk(e.to_string()))??;
        let mut conn = super::sqlite::writer_options(path, false, None)?.connect().await.map_err(classify)?;
        let below = match from {
            Some(0) | None => None,
            Some(n) => {
                let h: Option<Vec<u8>> = sqlx::query_scalar(include_str!("../../sql/api/canonical_hash_at.sql"))
                    .bind(to_sql("block number", n - 1)?)
                    .fetch_optional(&mut conn)
                    .await?;
                let h = h.ok_or_else(|| {
                    StoreError::Corrupt(format!("no canonical block {} is stored to replay from {n}", n - 1))
                })?;
                Some((n - 1, super::blocks::hash32(&h)?))
            }
        };
        let (n, h) = link_sql(below)?;
        let done = sqlx::query(include_str!("../../sql/sink/reset.sql"))
            .bind(sink)
            .bind(n)
            .bind(h)
            .bind(crate::types::now_ms())
            .execute(&mut conn)
            .await
            .map_err(classify)?;
        conn.close().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `sink` ever told consumers to undo a block.
    pub async fn sink_undid_any(&self, sink: &str) -> Result<bool, StoreError> {
        let any: bool = sqlx::query_scalar(include_str!("../../sql/sink/undone_any.sql"))
            .bind(sink)
            .fetch_one(&self.writer)
            .await?;
        Ok(any)
    }

    /// How many times `sink` told consumers to undo block `hash` (0: never).
    pub async fn sink_undone(&self, sink: &str, hash: B256) -> Result<u32, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(include_str!("../../sql/sink/undone_get.sql"))
            .bind(sink)
            .bind(hash.as_slice())
            .fetch_optional(&self.writer)
            .await?;
        Ok(t.map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX)))
    }

    /// Advance `sink` to `p` (after the broker acknowledged everything up to it), recording
    /// the blocks an acknowledged reorg message undid, in one transaction. `p.pending` is the
    /// claim of an earlier batch in flight that still reaches past the new position.
    pub async fn set_sink_position(&self, sink: &str, p: SinkPosition, undone: &[B256]) -> Result<(), StoreError> {
        let (n, h) = link_sql(p.block)?;
        let (pending_n, pending_h) = link_sql(p.pending)?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for u in undone {
            sqlx::query(include_str!("../../sql/sink/undone_add.sql"))
                .bind(sink)
                .bind(u.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        sqlx::query(include_str!("../../sql/sink/position_set.sql"))
            .bind(sink)
            .bind(n)
            .bind(h)
            .bind(to_sql("sink messages", p.messages)?)
            .bind(to_sql("sink stream sequence", p.stream_seq)?)
            .bind(crate::types::now_ms())
            .bind(pending_n)
            .bind(pending_h)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    /// Record why `sink` is stuck (its position stays).
    pub async fn set_sink_error(&self, sink: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../sql/sink/error_set.sql"))
            .bind(sink)
            .bind(error)
            .bind(crate::types::now_ms())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Every sink's row.
    pub async fn sinks(&self) -> Result<Vec<SinkRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/sink/list.sql")).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                Ok(SinkRow {
                    sink: r.try_get(0)?,
                    position: position(r, 1, None)?,
                    updated_ms: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                    last_error_ms: r.try_get(7)?,
                })
            })
            .collect()
    }
}
