//! Minute rollups of the telemetry: raw rows above `meta.rollup_last_id` are folded into
//! `provider_minutes`, the latency histogram and the hourly error classes, in the writer's transaction, so a window
//! over millions of raw rows reads a few hundred rollup rows.

use sqlx::SqliteConnection;

use super::{Store, StoreError, classify};

const LAST_ID: &str = "rollup_last_id";
/// Raw rows folded per transaction when catching up at open.
const CATCH_UP_CHUNK: i64 = 100_000;

/// Fold raw rows with `after < id <= upto` (on the caller's connection or transaction).
async fn fold(conn: &mut SqliteConnection, after: i64, upto: i64) -> Result<(), StoreError> {
    if upto <= after {
        return Ok(());
    }
    for sql in [
        include_str!("../../sql/rollup/minutes.sql"),
        include_str!("../../sql/rollup/latency.sql"),
        include_str!("../../sql/rollup/errors.sql"),
    ] {
        sqlx::query(sql).bind(after).bind(upto).execute(&mut *conn).await.map_err(classify)?;
    }
    sqlx::query(include_str!("../../sql/store/meta_set.sql"))
        .bind(LAST_ID)
        .bind(upto)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    Ok(())
}

async fn last_and_max(conn: &mut SqliteConnection) -> Result<(i64, i64), StoreError> {
    let last: Option<i64> = sqlx::query_scalar(include_str!("../../sql/store/meta_get.sql"))
        .bind(LAST_ID)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    let max: i64 = sqlx::query_scalar(include_str!("../../sql/rollup/max_id.sql")).fetch_one(&mut *conn).await?;
    Ok((last.unwrap_or(0), max))
}

/// Fold every raw row not folded yet, inside the caller's write transaction.
pub(super) async fn fold_new(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let (last, max) = last_and_max(conn).await?;
    fold(conn, last, max).await
}

impl Store {
    /// Fold raw rows written before the rollups existed (or by another program), in chunks
    /// so no transaction holds the writer for long. Returns how many raw ids were covered.
    pub async fn catch_up_rollups(&self) -> Result<i64, StoreError> {
        let mut covered = 0;
        loop {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
            let (last, max) = last_and_max(&mut tx).await?;
            if last >= max {
                return Ok(covered);
            }
            let upto = (last + CATCH_UP_CHUNK).min(max);
            fold(&mut tx, last, upto).await?;
            tx.commit().await.map_err(classify)?;
            covered += upto - last;
        }
    }
}
