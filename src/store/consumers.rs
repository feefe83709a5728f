//! Where `blockstreamer consume` stands in each stream it applies (`consumer_positions`): read
//! at start, advanced in the same transaction as the blocks and undos it applied.

use sqlx::Row;

use super::sqlite::classify;
use super::{Store, StoreError};
use crate::model::CommitBatch;
use crate::types::{from_sql, to_sql};

/// A consumer's place in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerPosition {
    /// The stream sequence of the last message applied (0: none).
    pub stream_seq: u64,
    /// Messages applied so far.
    pub messages: u64,
}

impl Store {
    /// Where the consumer of `stream` stands (zero when it never applied anything).
    pub async fn consumer_position(&self, stream: &str) -> Result<ConsumerPosition, StoreError> {
        let row = sqlx::query(include_str!("../../sql/consume/position_get.sql"))
            .bind(stream)
            .fetch_optional(&self.writer)
            .await?;
        match row {
            None => Ok(ConsumerPosition::default()),
            Some(r) => Ok(ConsumerPosition {
                stream_seq: from_sql("stream sequence", r.try_get(0)?)?,
                messages: from_sql("consumer messages", r.try_get(1)?)?,
            }),
        }
    }

    /// Apply `batches` in order and advance the consumer of `stream` to `at`, in one
    /// transaction: a crash keeps all of it or none of it.
    pub async fn commit_consumed(
        &self,
        batches: &[CommitBatch],
        stream: &str,
        at: ConsumerPosition,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for b in batches {
            self.apply_batch(&mut tx, b).await?;
        }
        sqlx::query(include_str!("../../sql/consume/position_set.sql"))
            .bind(stream)
            .bind(to_sql("stream sequence", at.stream_seq)?)
            .bind(to_sql("consumer messages", at.messages)?)
            .bind(crate::types::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let blocks = batches.iter().map(|b| b.blocks.len()).sum();
        self.committed(blocks, batches.iter().any(|b| b.reorg.is_some()));
        Ok(())
    }
}
