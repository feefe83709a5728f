//! Block commits during a bulk load (a long backfill) through a connection of their own.
//!
//! sqlx copies every bound value into an owned argument on the caller's thread, hands the
//! statement to its worker thread, where SQLite copies it again and the copies are freed: for a
//! backfill of full blocks that overhead was a third of the writer's time
//! (BENCHMARKS.md §2, `sim-pipeline --writer`). During a bulk load, append-only commits go
//! through this rusqlite connection instead, binding borrowed slices on a blocking thread.
//! Everything else (reorgs, telemetry, repairs) keeps the sqlx writer; the two serialise on
//! SQLite's write lock (`BEGIN IMMEDIATE`, busy timeout), exactly as two processes would.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior, params_from_iter};

use super::sqlite::{WriterSettings, classify_rusqlite as classify, open_bulk};
use super::{StoreError, params};
use crate::model::{Block, ProviderId};
use crate::types::to_sql;

/// The bulk-load connection while a bulk load runs (`None` otherwise).
#[derive(Debug, Clone, Default)]
pub(super) struct Bulk {
    conn: Arc<Mutex<Option<Connection>>>,
    /// Whether a connection is open, readable without waiting for a commit holding the lock.
    active: Arc<AtomicBool>,
}

impl Bulk {
    /// Open the connection (the database exists and is migrated by now).
    pub(super) fn start(&self, path: &Path, s: WriterSettings) -> Result<(), StoreError> {
        let conn = open_bulk(path, s)?;
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some(conn);
            self.active.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Close the connection (blocking: waits for a commit in progress); later commits go
    /// through sqlx again.
    pub(super) fn stop(&self) {
        self.active.store(false, Ordering::Release);
        if let Ok(mut slot) = self.conn.lock() {
            slot.take();
        }
    }

    /// Whether a bulk load's connection is open (never blocks).
    pub(super) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Apply a new size cap to the open connection, if any.
    pub(super) fn set_max_pages(&self, pages: i64) -> Result<(), StoreError> {
        if let Ok(slot) = self.conn.lock()
            && let Some(conn) = slot.as_ref()
        {
            conn.pragma_update(None, "max_page_count", pages).map_err(classify)?;
        }
        Ok(())
    }

    /// Insert `blocks` and their transactions in one `BEGIN IMMEDIATE` transaction (blocking).
    /// `Ok(false)` when no bulk load is running: the caller commits through sqlx instead.
    /// `provider_ids` maps each provider to its `providers.id`.
    pub(super) fn commit(
        &self,
        blocks: &[Block],
        provider_ids: &HashMap<ProviderId, i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let Ok(mut slot) = self.conn.lock() else { return Ok(false) };
        let Some(conn) = slot.as_mut() else { return Ok(false) };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
        {
            let mut insert_block = tx.prepare(include_str!("../../sql/store/insert_blocks.sql")).map_err(classify)?;
            let mut insert_tx =
                tx.prepare(include_str!("../../sql/store/insert_transactions.sql")).map_err(classify)?;
            let mut insert_receipt =
                tx.prepare(include_str!("../../sql/store/insert_receipts.sql")).map_err(classify)?;
            let mut insert_log = tx.prepare(include_str!("../../sql/store/insert_logs.sql")).map_err(classify)?;
            for b in blocks {
                let row = params::block(b, provider_ids.get(&b.provider).copied(), now)?;
                let id: i64 = insert_block.query_row(params_from_iter(row.iter()), |r| r.get(0)).map_err(classify)?;
                for t in &b.transactions {
                    insert_tx.execute(params_from_iter(params::transaction(id, t)?.iter())).map_err(classify)?;
                }
                let Some(receipts) = &b.receipts else { continue };
                let number = to_sql("block number", b.number)?;
                for r in &receipts.receipts {
                    insert_receipt.execute(params_from_iter(params::receipt(id, r)?.iter())).map_err(classify)?;
                    for l in &r.logs {
                        insert_log.execute(params_from_iter(params::log(id, number, r, l).iter())).map_err(classify)?;
                    }
                }
            }
        }
        tx.commit().map_err(classify)?;
        Ok(true)
    }
}
