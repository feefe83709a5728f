//! Learned provider capabilities read back: for `/v1/providers/{name}` and for the next run,
//! which starts from what the last one learned.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};
use crate::model::{CapabilityMethod, CapabilityRecord, ProviderId};
use crate::types::from_sql;

/// One learned capability as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityRow {
    pub provider: String,
    pub method: String,
    pub supported: bool,
    /// `eth_getLogs`: the widest block range known to be accepted.
    pub max_block_range: Option<u64>,
    pub learned_at_ms: i64,
    pub detail: String,
}

impl Store {
    /// Every stored capability, by provider name and method.
    pub async fn capabilities(&self) -> Result<Vec<CapabilityRow>, StoreError> {
        let rows = sqlx::query(include_str!("../../sql/api/capabilities.sql")).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                Ok(CapabilityRow {
                    provider: r.try_get(0)?,
                    method: r.try_get(1)?,
                    supported: r.try_get::<i64, _>(2)? == 1,
                    max_block_range: r.try_get::<Option<i64>, _>(3)?.map(|n| from_sql("block range", n)).transpose()?,
                    learned_at_ms: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// What earlier runs learned about the providers in `names` (id, name), for the fleet to
    /// start from. Methods this build does not know are skipped.
    pub async fn learned_capabilities(
        &self,
        names: &[(ProviderId, &str)],
    ) -> Result<Vec<CapabilityRecord>, StoreError> {
        let mut out = Vec::new();
        for row in self.capabilities().await? {
            let Some(&(id, _)) = names.iter().find(|(_, n)| *n == row.provider) else { continue };
            let Some(method) = CapabilityMethod::parse(&row.method) else { continue };
            out.push(CapabilityRecord {
                ts_ms: row.learned_at_ms,
                provider: id,
                method,
                supported: row.supported,
                max_range: row.max_block_range,
                detail: row.detail,
                notable: false,
            });
        }
        Ok(out)
    }
}
