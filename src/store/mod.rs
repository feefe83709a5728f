//! The SQLite file: connection settings, migrations, and the one writer that every write goes through.
//!
//! Two pools over one file: `writer` has exactly one connection, so all block, telemetry and
//! reorg writes are serialised without SQLITE_BUSY churn, each in a `BEGIN IMMEDIATE`
//! transaction; `reader` is read-only (`query_only`) for the API, export and checks.

mod alerts;
mod blocks;
mod bulk;
pub mod migrate;
mod multirow;
mod query;
mod repair;
mod retention;
mod rollup;
mod telemetry;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::U256;
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqlitePool};
use thiserror::Error;

pub use alerts::{AlertRow, AlertWindow};
pub use query::{
    BlockRow, CallPoint, EventRow, ProviderWindow, ReorgRow, RequestRow, StoredTip, TxRow, ratio, us_to_ms,
};
pub use repair::RepairRow;
pub use retention::PruneReport;
pub use telemetry::{TelemetryWriter, TelemetryWriterStats};

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
}

/// `max_page_count` for a size cap (4 KiB pages); SQLite's own maximum when uncapped.
fn max_pages(bytes: Option<u64>) -> u64 {
    bytes.map_or(4_294_967_294, |b| (b / 4096).max(16))
}

/// Map sqlx errors, keeping SQLITE_FULL (13) recognisable.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("13")
    {
        return StoreError::Full;
    }
    StoreError::Sqlx(e)
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
    /// Fleet index → `providers.id`, filled by `register_providers`.
    provider_ids: Arc<RwLock<Vec<i64>>>,
    /// Bumped after every commit that changed the canonical chain (stream, caches).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The block-commit connection of a running bulk load.
    bulk: bulk::Bulk,
}

/// Pragmas every writing connection gets (the sqlx writer and the bulk-load connection).
/// `temp_store`: multi-row upserts open a statement journal per statement; on disk that is a
/// pwrite per page touched, in memory a few MiB at most.
const WRITE_PRAGMAS: [(&str, &str); 4] =
    [("trusted_schema", "OFF"), ("journal_size_limit", "67108864"), ("temp_store", "MEMORY"), ("cache_size", "-32768")];

/// How a wei amount is stored: `Ok` an integer when it fits in i64, `Err` its decimal text.
pub(crate) fn wei_sql(v: U256) -> Result<i64, String> {
    i64::try_from(v).map_err(|_| v.to_string())
}

impl Store {
    /// Open (creating if needed) and migrate the database at `opts.path`.
    pub async fn open(opts: &StoreOptions) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&opts.path)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("trusted_schema", "OFF");
        let mut write_opts = base
            .clone()
            .create_if_missing(true)
            // auto_vacuum only takes effect before the first table exists; harmless later
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if opts.synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal });
        for (name, value) in WRITE_PRAGMAS {
            write_opts = write_opts.pragma(name, value);
        }
        let write_opts = write_opts
            .optimize_on_close(true, Some(400))
            .pragma("max_page_count", max_pages(opts.max_size_bytes).to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(write_opts)
            .await
            .map_err(classify)?;
        {
            let mut conn = writer.acquire().await?;
            migrate::runner().run_async(&mut migrate::SqlxMigrator(&mut conn)).await?;
        }
        // The previous process did not close the file (crash, kill -9, power loss): SQLite has
        // already rolled the WAL forward or back; check the pages before trusting them.
        let clean: Option<i64> = sqlx::query_scalar(include_str!("../../sql/store/meta_get.sql"))
            .bind("clean_shutdown")
            .fetch_optional(&writer)
            .await?
            .flatten();
        if clean == Some(0) {
            let started = std::time::Instant::now();
            let verdict: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&writer).await?;
            if verdict != "ok" {
                return Err(StoreError::Corrupt(format!(
                    "{} failed PRAGMA quick_check after an unclean shutdown: {verdict}",
                    opts.path.display()
                )));
            }
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(ms, "unclean shutdown detected; quick_check ok");
        }
        sqlx::query(include_str!("../../sql/store/meta_set.sql"))
            .bind("clean_shutdown")
            .bind(0i64)
            .execute(&writer)
            .await
            .map_err(classify)?;
        // A bulk load that was killed before it rebuilt the tx-hash index: rebuild it now.
        sqlx::query(include_str!("../../sql/store/tx_hash_index_create.sql"))
            .execute(&writer)
            .await
            .map_err(classify)?;
        let read_opts = base.read_only(true).pragma("query_only", "ON").busy_timeout(Duration::from_secs(1));
        let reader = SqlitePoolOptions::new()
            .max_connections(opts.readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(read_opts)
            .await?;
        let store = Self {
            writer,
            reader,
            path: opts.path.clone(),
            provider_ids: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            bulk: bulk::Bulk::default(),
        };
        let folded = store.catch_up_rollups().await?;
        if folded > 0 {
            // Catching up can leave a large WAL behind, which every reader would then search.
            store.checkpoint().await?;
            tracing::info!(rows = folded, "telemetry rollups caught up");
        }
        Ok(store)
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

    /// Register the fleet's providers, in fleet order (index i is the fleet's provider i).
    pub async fn register_providers(&self, providers: &[(String, String)]) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(providers.len());
        for (name, url) in providers {
            ids.push(self.upsert_provider(name, url).await?);
        }
        if let Ok(mut slot) = self.provider_ids.write() {
            *slot = ids;
        }
        Ok(())
    }

    /// `providers.id` of fleet provider `index`, if registered.
    pub(crate) fn provider_id(&self, index: u16) -> Option<i64> {
        self.provider_ids.read().ok().and_then(|ids| ids.get(usize::from(index)).copied())
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

    /// Start a bulk load: drop the tx-hash index, whose random keys make every commit rewrite
    /// pages all over it, and send append-only block commits through a connection of their
    /// own (`bulk.rs`). `end_bulk_load` (or the next `open`, after a crash) rebuilds the index.
    pub async fn begin_bulk_load(&self) -> Result<(), StoreError> {
        sqlx::query(include_str!("../../sql/store/tx_hash_index_drop.sql"))
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        // The writer's current settings (the size cap may have changed since open).
        let (synchronous, max_pages): (i64, i64) =
            sqlx::query_as("SELECT synchronous, max_page_count FROM pragma_synchronous, pragma_max_page_count")
                .fetch_one(&self.writer)
                .await?;
        let settings = bulk::BulkSettings { synchronous, max_pages };
        let (bulk, path) = (self.bulk.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || bulk.start(&path, settings))
            .await
            .map_err(|e| StoreError::Bulk(e.to_string()))??;
        Ok(())
    }

    /// End a bulk load: close its connection and rebuild the tx-hash index (one sorted build).
    pub async fn end_bulk_load(&self) -> Result<(), StoreError> {
        let bulk = self.bulk.clone();
        tokio::task::spawn_blocking(move || bulk.stop()).await.map_err(|e| StoreError::Bulk(e.to_string()))?;
        sqlx::query(include_str!("../../sql/store/tx_hash_index_create.sql"))
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Checkpoint the WAL and truncate it (after a backfill, or when idle).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.writer).await?;
        Ok(())
    }

    /// Credits spent per provider (fleet index) since `since_ms`, from the telemetry.
    pub async fn credits_since(&self, since_ms: i64) -> Result<Vec<(u16, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(include_str!("../../sql/store/credits_since.sql"))
            .bind(since_ms)
            .fetch_all(&self.reader)
            .await?;
        let ids = self.provider_ids.read().map(|v| v.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for (id, credits) in rows {
            if let Some(i) = ids.iter().position(|x| *x == id)
                && let Ok(i) = u16::try_from(i)
            {
                out.push((i, u64::try_from(credits).unwrap_or(0)));
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
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// If the WAL has grown past `threshold` bytes, try a TRUNCATE checkpoint on a connection of
    /// its own that never waits: while a long reader pins an old snapshot the checkpoint cannot
    /// finish, and waiting for it would stall the writer. Returns whether it truncated.
    pub async fn trim_wal(&self, threshold: u64) -> Result<bool, StoreError> {
        if self.wal_bytes() <= threshold {
            return Ok(false);
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?.filename(&self.path).busy_timeout(Duration::ZERO);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut conn).await;
        let _ = conn.close().await;
        match row {
            // (busy, log pages, checkpointed pages); busy = 1 means a reader or writer was in the way
            Ok(r) => Ok(r.try_get::<i64, _>(0)? == 0),
            Err(_) => Ok(false),
        }
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
        if let Err(e) = self.set_meta("clean_shutdown", 1).await {
            tracing::warn!(error = %e, "could not mark the database cleanly closed");
        }
        self.writer.close().await;
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
