//! The read side of `client_requests`: the recent `/rpc` calls, for the client panel.

use sqlx::Row;

use super::{Store, StoreError};

/// One client call as the panel reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCallRow {
    /// The key's name (`None`: no key).
    pub key_name: Option<String>,
    pub method: String,
    /// `store`, a provider's name, or `blockstreamer` (refused before anyone was asked).
    pub source: String,
    /// `ok`, `rpc_error` or `refused`.
    pub outcome: String,
    pub latency_us: i64,
    pub bytes: i64,
}

impl Store {
    /// The client calls since `since_ms`, newest first, at most `limit`.
    pub async fn client_calls_since(&self, since_ms: i64, limit: u32) -> Result<Vec<ClientCallRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/client_calls.sql"))
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ClientCallRow {
                    key_name: r.try_get(0)?,
                    method: r.try_get(1)?,
                    source: r.try_get(2)?,
                    outcome: r.try_get(3)?,
                    latency_us: r.try_get(4)?,
                    bytes: r.try_get(5)?,
                })
            })
            .collect()
    }
}
