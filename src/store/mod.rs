//! The SQLite file: connection settings, migrations, and the one writer that every write goes through.
//!
//! Two pools over one file: `writer` has exactly one connection, so all block, telemetry and
//! reorg writes are serialised without SQLITE_BUSY churn, each in a `BEGIN IMMEDIATE`
//! transaction; `reader` is read-only (`query_only`) for the API, export and checks.

mod activity;
mod alerts;
mod blocks;
mod bulk;
mod capability;
mod clients;
mod consumers;
mod index;
mod logs_read;
pub mod migrate;
mod multirow;
mod params;
mod query;
mod repair;
mod retention;
mod rollup;
mod rpc_read;
mod sinks;
pub mod sqlite;
mod telemetry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::U256;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Connection, Row, SqlitePool};
use thiserror::Error;

pub use activity::{BlockActivity, IndexActivity, RefusedAnswers};
pub use consumers::ConsumerPosition;
pub use rpc_read::{BlockAt, Kept, KeptJson, KeptLogs};
pub use sinks::{SinkPosition, SinkRow};

/// The random-keyed indexes a long bulk load drops and rebuilds: (drop, create if missing).
const BULK_INDEXES: [(&str, &str); 3] = [
    (include_str!("../../sql/store/tx_hash_index_drop.sql"), include_str!("../../sql/store/tx_hash_index_create.sql")),
    (
        include_str!("../../sql/store/receipts_hash_index_drop.sql"),
        include_str!("../../sql/store/receipts_hash_index_create.sql"),
    ),
    (include_str!("../../sql/store/logs_tx_index_drop.sql"), include_str!("../../sql/store/logs_tx_index_create.sql")),
];
pub use alerts::{AlertRow, AlertWindow};
pub use capability::CapabilityRow;
pub use clients::ClientCallRow;
pub use index::DecodeBackfill;
pub use logs_read::{DecodeErrorRow, EventFilter, EventTableRow, LogQuery, LogRow, ReceiptRow};
pub use query::{
    BlockRow, CallPoint, DroppedBranch, EventRow, ProviderWindow, ReorgRow, RequestRow, StoredTip, TxRow, ratio,
    us_to_ms,
};
pub use repair::RepairRow;
pub use retention::PruneReport;
pub use sqlite::Access;
pub(crate) use sqlite::classify;
use sqlite::{SqliteClass, max_pages};
pub use telemetry::{TelemetryWriter, TelemetryWriterStats};

use crate::model::ProviderId;
use crate::types::OutOfRange;

/// Everything that can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] refinery_core::Error),
    #[error(transparent)]
    Range(#[from] OutOfRange),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("storage is full: ingest pauses until space is freed")]
    Full,
    /// From the bulk-load connection (rusqlite); SQLITE_FULL becomes `Full`.
    #[error("database error: {0}")]
    Bulk(String),
    #[error("cannot open {path}: {why}")]
    Open { path: String, why: String },
    #[error("{path} is not a blockstreamer database: {why}; give another --db")]
    NotBlockstreamer { path: String, why: String },
    #[error(
        "{path} was written by a newer blockstreamer (schema version {version}; this binary knows up to {latest}): upgrade blockstreamer"
    )]
    NewerSchema { path: String, version: i32, latest: i32 },
    #[error(
        "{path} is at schema version {version} and this binary reads {latest}: run `blockstreamer run` or `backfill` on it once to upgrade it"
    )]
    OlderSchema { path: String, version: i32, latest: i32 },
    #[error("no database at {0}")]
    Missing(String),
    #[error("the database is open read-only in this process; the process that writes it does this")]
    ReadOnly,
}

/// How to open the file.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// `synchronous=FULL` instead of NORMAL: survives power loss, ~20 % slower commits.
    pub synchronous_full: bool,
    /// Read-only connections in the reader pool.
    pub readers: u32,
    /// Cap on the database file size (`PRAGMA max_page_count`); writes past it fail with
    /// `StoreError::Full` and ingest pauses instead of filling the disk.
    pub max_size_bytes: Option<u64>,
}

impl StoreOptions {
    /// Defaults for a file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), synchronous_full: false, readers: 4, max_size_bytes: None }
    }
}

/// Handle to the SQLite file. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
    /// Provider → `providers.id`, filled by `register_providers`: the one place a provider id
    /// becomes a row id.
    provider_ids: Arc<RwLock<HashMap<ProviderId, i64>>>,
    /// Bumped after every commit that changed the canonical chain (stream, caches).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The block-commit connection of a running bulk load.
    bulk: bulk::Bulk,
    /// How the file was opened (read-only ones never write anything).
    access: Access,
    /// The `[index]` selection and decoded tables the writers use (`use_indexing`).
    index: Arc<RwLock<Arc<index::IndexSql>>>,
}

/// How a wei amount is stored: `Ok` an integer when it fits in i64, `Err` its decimal text.
pub(crate) fn wei_sql(v: U256) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| v.to_string())
}

impl Store {
    /// Open (creating if needed) and migrate the database at `opts.path`. A file that is not a
    /// blockstreamer database, or one written by a newer binary, is refused before anything is
    /// written to it.
    pub async fn open(opts: &StoreOptions) -> Result<Self, StoreError> {
        let path = opts.path.clone();
        tokio::task::spawn_blocking(move || sqlite::inspect(&path))
            .await
            .map_err(|e| StoreError::Bulk(e.to_string()))??;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(sqlite::writer_options(&opts.path, opts.synchronous_full, opts.max_size_bytes)?)
            .await
            .map_err(classify)?;
        {
            let mut conn = writer.acquire().await?;
            migrate::runner().run_async(&mut migrate::SqlxMigrator(&mut conn)).await?;
        }
        Self::check_after_crash(&writer, &opts.path).await?;
        // A bulk load that was killed before it rebuilt the hash indexes: rebuild them now.
        for (_, create) in BULK_INDEXES {
            sqlx::query(create).execute(&writer).await.map_err(classify)?;
        }
        let reader = Self::reader_pool(&opts.path, Access::ReadOnly, opts.readers).await?;
        let store = Self::assemble(writer, reader, &opts.path, Access::ReadWrite);
        let folded = store.catch_up_rollups().await?;
        if folded > 0 {
            // Catching up can leave a large WAL behind, which every reader would then search.
            store.checkpoint().await?;
            tracing::info!(rows = folded, "telemetry rollups caught up");
        }
        Ok(store)
    }

    /// Open an existing database without ever writing to it (`serve`, `gaps`): no migration, no
    /// shutdown marker, no rollup catch-up. Refuses a missing file, a file that is not a
    /// blockstreamer database, and one at another schema version than this binary's.
    pub async fn open_read_only(path: &Path, access: Access) -> Result<Self, StoreError> {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || sqlite::check_readable(&owned, access))
            .await
            .map_err(|e| StoreError::Bulk(e.to_string()))??;
        // Reads that ingest makes on the writer go to a read-only connection here, so any write
        // fails with SQLITE_READONLY instead of touching the file.
        let writer = Self::reader_pool(path, access, 1).await?;
        let reader = Self::reader_pool(path, access, 4).await?;
        let access = if access == Access::ReadWrite { Access::ReadOnly } else { access };
        Ok(Self::assemble(writer, reader, path, access))
    }

    async fn reader_pool(path: &Path, access: Access, size: u32) -> Result<SqlitePool, StoreError> {
        let access = if access == Access::ReadWrite { Access::ReadOnly } else { access };
        Ok(SqlitePoolOptions::new()
            .max_connections(size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(sqlite::reader_options(path, access)?)
            .await?)
    }

    fn assemble(writer: SqlitePool, reader: SqlitePool, path: &Path, access: Access) -> Self {
        Self {
            writer,
            reader,
            path: path.to_path_buf(),
            provider_ids: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            bulk: bulk::Bulk::default(),
            access,
            index: Arc::new(RwLock::new(Arc::new(index::IndexSql::new()))),
        }
    }

    /// The previous writer did not close the file (crash, kill -9, power loss): SQLite has
    /// already rolled the WAL forward or back; check the pages before trusting them. Then mark
    /// the file open (`clean_shutdown` = 0) until `close`.
    async fn check_after_crash(writer: &SqlitePool, path: &Path) -> Result<(), StoreError> {
        let clean: Option<i64> = sqlx::query_scalar(include_str!("../../sql/store/meta_get.sql"))
            .bind("clean_shutdown")
            .fetch_optional(writer)
            .await?
            .flatten();
        if clean == Some(0) {
            let started = std::time::Instant::now();
            let verdict: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(writer).await?;
            if verdict != "ok" {
                return Err(StoreError::Corrupt(format!(
                    "{} failed PRAGMA quick_check after an unclean shutdown: {verdict}",
                    path.display()
                )));
            }
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(ms, "unclean shutdown detected; quick_check ok");
        }
        sqlx::query(include_str!("../../sql/store/meta_set.sql"))
            .bind("clean_shutdown")
            .bind(0i64)
            .execute(writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// How the file was opened.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver that changes after every commit that touched the canonical chain (new
    /// blocks, a reorg, a repair). Commits made by another process are not seen: poll too.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn notify_change(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The read-only pool (API, export, checks).
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Register the fleet's providers: (id, name, redacted URL) each.
    pub async fn register_providers(&self, providers: &[(ProviderId, String, String)]) -> Result<(), StoreError> {
        let mut ids = HashMap::with_capacity(providers.len());
        for (id, name, url) in providers {
            ids.insert(*id, self.upsert_provider(name, url).await?);
        }
        *self.provider_ids.write().unwrap_or_else(std::sync::PoisonError::into_inner) = ids;
        Ok(())
    }

    /// `providers.id` of a registered provider.
    pub(crate) fn provider_id(&self, id: ProviderId) -> Option<i64> {
        // A poisoned lock (a panic elsewhere while registering) still holds a whole map: the
        // writes above replace it in one assignment.
        self.provider_ids.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).copied()
    }

    /// The whole provider map (for the bulk connection, which runs off the async runtime).
    fn provider_map(&self) -> HashMap<ProviderId, i64> {
        self.provider_ids.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Register a provider by name and return its row id (stable across restarts).
    pub async fn upsert_provider(&self, name: &str, url_redacted: &str) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(include_str!("../../sql/store/upsert_provider.sql"))
            .bind(name)
            .bind(url_redacted)
            .bind(crate::types::now_ms())
            .fetch_one(&self.writer)
            .await
            .map_err(classify)?;
        Ok(id)
    }

    /// Set a `meta` key.
    pub async fn set_meta(&self, key: &str, value: i64) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../sql/store/meta_set.sql"))
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Read an integer `meta` key.
    pub async fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let row =
            sqlx::query(include_str!("../../sql/store/meta_get.sql")).bind(key).fetch_optional(&self.reader).await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>, _>(0)?,
            None => None,
        })
    }

    /// Start a bulk load: send append-only block commits through a connection of their own
    /// (`bulk.rs`), and with `drop_indexes` drop the hash indexes (transactions, receipts and
    /// logs by hash), whose random keys make every commit rewrite pages all over them.
    /// `end_bulk_load` (or the next `open`, after a crash) rebuilds them.
    pub async fn begin_bulk_load(&self, drop_indexes: bool) -> Result<(), StoreError> {
        if drop_indexes {
            for (drop, _) in BULK_INDEXES {
                sqlx::query(drop).execute(&self.writer).await.map_err(classify)?;
            }
        }
        // The writer's current settings (the size cap may have changed since open).
        let (synchronous, max_pages): (i64, i64) =
            sqlx::query_as("SELECT synchronous, max_page_count FROM pragma_synchronous, pragma_max_page_count")
                .fetch_one(&self.writer)
                .await?;
        let settings = sqlite::WriterSettings { synchronous, max_pages };
        let (bulk, path) = (self.bulk.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || bulk.start(&path, settings))
            .await
            .map_err(|e| StoreError::Bulk(e.to_string()))??;
        Ok(())
    }

    /// Whether a bulk load is running.
    pub fn bulk_active(&self) -> bool {
        self.bulk.active()
    }

    /// Start a bulk load of `blocks` appended heights, dropping the hash indexes when a rebuild
    /// pays: the load is at least `rebuild_min` blocks, or at least as long as what the file
    /// holds (a rebuild covers the whole file; a fresh file, say). Returns whether they were
    /// dropped.
    pub async fn begin_bulk_load_of(&self, blocks: u64, rebuild_min: u64) -> Result<bool, StoreError> {
        let drop_indexes = blocks >= rebuild_min || blocks >= self.block_count().await?;
        self.begin_bulk_load(drop_indexes).await?;
        Ok(drop_indexes)
    }

    /// End a bulk load: close its connection and rebuild any dropped hash index (one sorted
    /// build each).
    pub async fn end_bulk_load(&self) -> Result<(), StoreError> {
        let bulk = self.bulk.clone();
        let t = std::time::Instant::now();
        tokio::task::spawn_blocking(move || bulk.stop()).await.map_err(|e| StoreError::Bulk(e.to_string()))?;
        tracing::debug!(ms = t.elapsed().as_millis(), wal_bytes = self.wal_bytes(), "bulk connection closed");
        // The sorted builds ran 0.77-1.0 s for 400,000 transactions over the writer's 32 MiB page
        // cache and 0.46-0.65 s over SQLite's default 2 MiB (BENCHMARKS §8): build over the
        // small one, then give the writer its cache back whatever the build did.
        let set_cache = |c: sqlite::WriterCache| sqlx::query(c.pragma()).execute(&self.writer);
        set_cache(sqlite::WriterCache::IndexBuild).await.map_err(classify)?;
        let built = self.build_bulk_indexes().await;
        set_cache(sqlite::WriterCache::Normal).await.map_err(classify)?;
        built
    }

    async fn build_bulk_indexes(&self) -> Result<(), StoreError> {
        for (_, create) in BULK_INDEXES {
            let t = std::time::Instant::now();
            sqlx::query(create).execute(&self.writer).await.map_err(classify)?;
            tracing::debug!(ms = t.elapsed().as_millis(), wal_bytes = self.wal_bytes(), "hash index built");
        }
        Ok(())
    }

    /// About how many blocks the file holds (canonical or not): the highest block row id, read
    /// from the primary key's end, not counted.
    pub async fn block_count(&self) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar(include_str!("../../sql/store/block_count.sql")).fetch_one(&self.reader).await?;
        Ok(crate::types::from_sql("block count", n)?)
    }

    /// Checkpoint the WAL and truncate it (after a backfill, or when idle).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.access != Access::ReadWrite {
            return Err(StoreError::ReadOnly);
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await?;
        Ok(())
    }

    /// Credits spent per registered provider since `since_ms`, from the telemetry.
    pub async fn credits_since(&self, since_ms: i64) -> Result<Vec<(ProviderId, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(include_str!("../../sql/store/credits_since.sql"))
            .bind(since_ms)
            .fetch_all(&self.reader)
            .await?;
        let ids = self.provider_map();
        let mut out = Vec::new();
        for (row_id, credits) in rows {
            if let Some((id, _)) = ids.iter().find(|(_, r)| **r == row_id) {
                out.push((*id, u64::try_from(credits).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// Change the size cap at run time (None: no cap beyond SQLite's own).
    pub async fn set_max_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        let pages = max_pages(bytes);
        let sql = format!("PRAGMA max_page_count = {pages}");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.writer).await.map_err(classify)?;
        let (bulk, pages) = (self.bulk.clone(), crate::types::to_sql("max_page_count", pages)?);
        tokio::task::spawn_blocking(move || bulk.set_max_pages(pages))
            .await
            .map_err(|e| StoreError::Bulk(e.to_string()))??;
        Ok(())
    }

    /// Size of the `-wal` file now (0 when absent).
    pub fn wal_bytes(&self) -> u64 {
        sqlite::wal_bytes(&self.path)
    }

    /// If the WAL has grown past `threshold` bytes, try a TRUNCATE checkpoint on a connection of
    /// its own that never waits: while a long reader pins an old snapshot the checkpoint cannot
    /// finish, and waiting for it would stall the writer. Returns whether it truncated.
    pub async fn trim_wal(&self, threshold: u64) -> Result<bool, StoreError> {
        if self.access != Access::ReadWrite {
            return Err(StoreError::ReadOnly);
        }
        if self.wal_bytes() <= threshold {
            return Ok(false);
        }
        let mut conn = sqlx::SqliteConnection::connect_with(&sqlite::no_wait_options(&self.path)?).await?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut conn).await;
        let _ = conn.close().await;
        checkpoint_verdict(row)
    }

    /// Run the chain invariant checks (`sql/checks/chain_invariants.sql`).
    pub async fn chain_invariants(&self) -> Result<ChainInvariants, StoreError> {
        let r = sqlx::query(include_str!("../../sql/checks/chain_invariants.sql")).fetch_one(&self.reader).await?;
        Ok(ChainInvariants {
            heights: r.try_get(0)?,
            missing: r.try_get(1)?,
            dups: r.try_get(2)?,
            link_breaks: r.try_get(3)?,
            partial: r.try_get(4)?,
        })
    }

    /// Close both pools, waiting for in-flight statements, and mark the file cleanly closed
    /// (so the next open skips the quick_check).
    pub async fn close(&self) {
        let bulk = self.bulk.clone();
        let _ = tokio::task::spawn_blocking(move || bulk.stop()).await;
        self.reader.close().await;
        if self.access == Access::ReadWrite
            && let Err(e) = self.set_meta("clean_shutdown", 1).await
        {
            tracing::warn!(error = %e, "could not mark the database cleanly closed");
        }
        self.writer.close().await;
    }
}

/// What a `wal_checkpoint(TRUNCATE)` says: truncated or not. A lock in the way (busy) is "not
/// now, try later"; any other error (I/O, a full disk, a corrupt file) is reported.
fn checkpoint_verdict(row: Result<sqlx::sqlite::SqliteRow, sqlx::Error>) -> Result<bool, StoreError> {
    match row {
        // (busy, log pages, checkpointed pages); busy = 1 means a reader or writer was in the way
        Ok(r) => Ok(r.try_get::<i64, _>(0)? == 0),
        Err(e) if SqliteClass::of_sqlx(&e) == SqliteClass::Busy => Ok(false),
        Err(e) => Err(classify(e)),
    }
}

/// Counts from `sql/checks/chain_invariants.sql`; everything but `heights` must be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainInvariants {
    pub heights: i64,
    pub missing: i64,
    pub dups: i64,
    pub link_breaks: i64,
    pub partial: i64,
}

impl ChainInvariants {
    /// True when no invariant is broken.
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.dups == 0 && self.link_breaks == 0 && self.partial == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poisoned_provider_map_still_names_the_provider() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = Store::open(&StoreOptions::new(dir.path().join("t.db"))).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .register_providers(&[(ProviderId(0), "a".into(), "http://a".into())])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ids = store.provider_ids.clone();
        // A task that panics while holding the lock poisons it.
        let _ = std::thread::spawn(move || {
            let _guard = ids.write();
            panic!("poison the provider map");
        })
        .join();
        assert!(store.provider_ids.is_poisoned());
        assert!(store.provider_id(ProviderId(0)).is_some(), "blocks would be stored with a NULL provider");
        store.close().await;
    }

    #[tokio::test]
    async fn a_read_only_store_refuses_writes_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("t.db");
        Store::open(&StoreOptions::new(&path)).await.unwrap_or_else(|e| panic!("{e}")).close().await;
        let ro = Store::open_read_only(&path, Access::ReadOnly).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(ro.trim_wal(0).await, Err(StoreError::ReadOnly)));
        assert!(ro.set_meta("x", 1).await.is_err(), "a write through a read-only store");
        ro.close().await;
    }

    #[tokio::test]
    async fn a_checkpoint_error_is_reported_unless_it_is_a_lock_in_the_way() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("t.db");
        let store = Store::open(&StoreOptions::new(&path)).await.unwrap_or_else(|e| panic!("{e}"));
        let mut other =
            sqlx::SqliteConnection::connect_with(&sqlite::no_wait_options(&path).unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        // A real error that is not a lock: reported.
        let broken = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE) garbage").fetch_one(&mut other).await;
        assert!(checkpoint_verdict(broken).is_err());
        // A lock in the way (SQLITE_BUSY with no wait): not now.
        let mut holder = store.writer.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *holder).await.unwrap_or_else(|e| panic!("{e}"));
        let busy = sqlx::query("BEGIN IMMEDIATE").fetch_one(&mut other).await;
        assert!(busy.is_err());
        assert!(matches!(checkpoint_verdict(busy), Ok(false)));
        sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap_or_else(|e| panic!("{e}"));
        drop(holder);
        let _ = other.close().await;
        store.close().await;
    }
}
