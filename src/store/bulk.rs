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

use super::index::{IndexSql, row_params};
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
    /// Checkpoints the WAL beside the commits while a bulk load runs.
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
}

/// The WAL past which a commit checkpoints on its own thread, as SQLite's autocheckpoint would,
/// because the background checkpoints are not keeping up (a reader pinning an old snapshot).
const WAL_BOUND_BYTES: u64 = 256 << 20;

/// A thread with a connection of its own that runs a PASSIVE checkpoint after each bulk commit.
///
/// SQLite's autocheckpoint runs on the committing connection, inside the commit: during a bulk
/// load that was a quarter of the writer's time (BENCHMARKS.md §8), on the thread every commit
/// waits for. A PASSIVE checkpoint from another connection copies the committed frames into the
/// database while the next batch is inserted (it never takes the write lock), and once it has
/// copied everything the next commit starts the WAL from its beginning again.
#[derive(Debug)]
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path, s: WriterSettings) -> Result<Self, StoreError> {
        let conn = open_bulk(path, s)?;
        // At most one wake-up waits: commits during a checkpoint ask for one more, not one each.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("bulk-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    // Busy (another checkpoint, a reader in the way) is fine: the next commit
                    // asks again, and the bound in `commit` keeps the WAL from growing for ever.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!(error = %e, "background checkpoint");
                    }
                }
            })
            .map_err(|e| StoreError::Bulk(format!("checkpoint thread: {e}")))?;
        Ok(Self { wake, thread })
    }

    fn wake(&self) {
        // Full: one is already pending, which covers this commit too.
        let _ = self.wake.try_send(());
    }

    /// Stop after the checkpoint in progress, if any.
    fn stop(self) {
        drop(self.wake);
        let _ = self.thread.join();
    }
}

impl Bulk {
    /// Open the connection (the database exists and is migrated by now) and the checkpointer.
    pub(super) fn start(&self, path: &Path, s: WriterSettings) -> Result<(), StoreError> {
        let conn = open_bulk(path, s)?;
        // Commits leave checkpoints to the checkpointer (and to `WAL_BOUND_BYTES`).
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(classify)?;
        let checkpointer = Checkpointer::start(path, s)?;
        if let Ok(mut slot) = self.checkpointer.lock()
            && let Some(old) = slot.replace(checkpointer)
        {
            old.stop();
        }
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some(conn);
            self.active.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Close the connection (blocking: waits for a commit in progress, then for the
    /// checkpoint in progress); later commits go through sqlx again.
    pub(super) fn stop(&self) {
        self.active.store(false, Ordering::Release);
        if let Ok(mut slot) = self.conn.lock() {
            slot.take();
        }
        if let Some(c) = self.checkpointer.lock().ok().and_then(|mut c| c.take()) {
            c.stop();
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
        index: &IndexSql,
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
            let mut insert_json =
                tx.prepare(include_str!("../../sql/store/insert_block_json.sql")).map_err(classify)?;
            let mut decoded_stmts: Vec<Option<rusqlite::Statement<'_>>> = index.tables.iter().map(|_| None).collect();
            for b in blocks {
                let row = params::block(b, provider_ids.get(&b.provider).copied(), now, index.selection)?;
                let id: i64 = insert_block.query_row(params_from_iter(row.iter()), |r| r.get(0)).map_err(classify)?;
                if b.raw.is_some() {
                    let (block, receipts, logs) = params::json(b);
                    insert_json.execute(rusqlite::params![id, block, receipts, logs]).map_err(classify)?;
                }
                for t in &b.transactions {
                    insert_tx.execute(params_from_iter(params::transaction(id, t)?.iter())).map_err(classify)?;
                }
                for r in b.receipts.iter().flat_map(|r| r.receipts.iter()) {
                    insert_receipt.execute(params_from_iter(params::receipt(id, r)?.iter())).map_err(classify)?;
                }
                let number = to_sql("block number", b.number)?;
                for l in b.all_logs() {
                    insert_log.execute(params_from_iter(params::log(id, number, l).iter())).map_err(classify)?;
                }
                insert_decoded(&tx, &mut decoded_stmts, index, (id, number), &b.decoded)?;
            }
        }
        tx.commit().map_err(classify)?;
        if conn.path().is_some_and(|p| super::sqlite::wal_bytes(Path::new(p)) > WAL_BOUND_BYTES) {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(classify)?;
        } else if let Ok(c) = self.checkpointer.lock()
            && let Some(c) = c.as_ref()
        {
            c.wake();
        }
        Ok(true)
    }
}

/// A block's decoded rows and decode errors, through the connection's statement cache.
fn insert_decoded<'c>(
    tx: &'c rusqlite::Transaction<'_>,
    stmts: &mut [Option<rusqlite::Statement<'c>>],
    index: &IndexSql,
    (id, number): (i64, i64),
    decoded: &[crate::index::DecodedLog],
) -> Result<(), StoreError> {
    let mut bad = 0u64;
    for d in decoded {
        let k = usize::from(d.table);
        let (Some(table), Some(slot)) = (index.tables.get(k), stmts.get_mut(k)) else { continue };
        match &d.values {
            Ok(values) => {
                let stmt = match slot {
                    Some(s) => s,
                    None => slot.insert(tx.prepare(table.insert).map_err(classify)?),
                };
                stmt.execute(params_from_iter(row_params(id, number, d.log_index, values).iter())).map_err(classify)?;
            }
            Err(e) => {
                bad += 1;
                tx.execute(
                    include_str!("../../sql/index/insert_decode_error.sql"),
                    rusqlite::params![id, i64::from(d.log_index), table.name, e],
                )
                .map_err(classify)?;
            }
        }
    }
    if bad > 0 {
        metrics::counter!("blockstreamer_decode_errors_total").increment(bad);
    }
    metrics::counter!("blockstreamer_events_decoded_total").increment(decoded.len() as u64 - bad);
    Ok(())
}
