//! Opening the SQLite file and classifying its errors. Every connection the process makes — the
//! sqlx writer and readers, the bulk-load connection, the SQL sandbox's and export's read-only
//! ones — is configured here, and one classifier maps SQLite's result codes for all of them.
//!
//! Before anything opens a file for writing or reading, [`inspect`] checks that it is a
//! blockstreamer database at a schema version this binary knows, without writing a byte.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use super::StoreError;

/// Pragmas every writing connection gets (the sqlx writer and the bulk-load connection).
/// `temp_store`: multi-row upserts open a statement journal per statement; on disk that is a
/// pwrite per page touched, in memory a few MiB at most.
const WRITE_PRAGMAS: [(&str, &str); 3] =
    [("trusted_schema", "OFF"), ("journal_size_limit", "67108864"), ("temp_store", "MEMORY")];

/// The sqlx writer's page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterCache {
    /// 32 MiB: what the writer runs with.
    Normal,
    /// SQLite's default 2 MiB, while the hash indexes a bulk load dropped are rebuilt (their
    /// sorted builds measured faster over it).
    IndexBuild,
}

impl WriterCache {
    /// The `cache_size` value (negative: KiB).
    fn value(self) -> &'static str {
        match self {
            Self::Normal => "-32768",
            Self::IndexBuild => "-2000",
        }
    }

    /// The statement that sets it on a connection (a pragma's value cannot be bound).
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "PRAGMA cache_size = -32768",
            Self::IndexBuild => "PRAGMA cache_size = -2000",
        }
    }
}

/// How a process may use the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `run`, `backfill`, `demo`: creates and migrates the file.
    ReadWrite,
    /// `serve`, `sql`, `export`, `gaps`: never writes (`mode=ro`, `query_only`); another process
    /// may be writing.
    ReadOnly,
    /// Read-only, and nobody changes the file while it is open (SQLite's `immutable`): for a
    /// file on read-only media or in a directory this user may not write.
    Immutable,
}

/// What class of SQLite error a result code is, for the decisions the code makes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteClass {
    /// SQLITE_FULL: the size cap or the disk.
    Full,
    /// SQLITE_READONLY: a write on a read-only connection or file.
    ReadOnly,
    /// SQLITE_BUSY / SQLITE_LOCKED.
    Busy,
    /// SQLITE_INTERRUPT: a progress handler stopped the statement (a deadline).
    Interrupted,
    /// SQLITE_TOOBIG.
    TooBig,
    /// SQLITE_AUTH: the authorizer refused the statement.
    Denied,
    /// SQLITE_IOERR.
    Io,
    /// SQLITE_CORRUPT / SQLITE_NOTADB.
    Corrupt,
    /// SQLITE_CANTOPEN.
    CantOpen,
    /// SQLITE_MISUSE (an empty statement, for one).
    Misuse,
    Other,
}

impl SqliteClass {
    /// The class of a primary or extended result code.
    pub fn of_code(code: i32) -> Self {
        match code & 0xff {
            13 => Self::Full,
            8 => Self::ReadOnly,
            5 | 6 => Self::Busy,
            9 => Self::Interrupted,
            18 => Self::TooBig,
            23 => Self::Denied,
            10 => Self::Io,
            11 | 26 => Self::Corrupt,
            14 => Self::CantOpen,
            21 => Self::Misuse,
            _ => Self::Other,
        }
    }

    /// The class of a rusqlite error (`Other` for errors that are not SQLite's).
    pub fn of_rusqlite(e: &rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _) => Self::of_code(f.extended_code),
            _ => Self::Other,
        }
    }

    /// The class of a sqlx error (`Other` for errors that are not SQLite's).
    pub fn of_sqlx(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(db) => {
                db.code().and_then(|c| c.parse::<i32>().ok()).map_or(Self::Other, Self::of_code)
            }
            _ => Self::Other,
        }
    }
}

/// Map a sqlx error into the store's, keeping "storage full" recognisable.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    match SqliteClass::of_sqlx(&e) {
        SqliteClass::Full => StoreError::Full,
        _ => StoreError::Sqlx(e),
    }
}

/// Map a rusqlite error into the store's, keeping "storage full" recognisable.
#[allow(clippy::needless_pass_by_value)] // used as map_err(classify_rusqlite)
pub(crate) fn classify_rusqlite(e: rusqlite::Error) -> StoreError {
    match SqliteClass::of_rusqlite(&e) {
        SqliteClass::Full => StoreError::Full,
        _ => StoreError::Bulk(e.to_string()),
    }
}

/// Size of the `-wal` file beside the database at `db` now (0 when absent).
pub(crate) fn wal_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// `max_page_count` for a size cap (4 KiB pages); SQLite's own maximum when uncapped.
pub(crate) fn max_pages(bytes: Option<u64>) -> u64 {
    bytes.map_or(4_294_967_294, |b| (b / 4096).max(16))
}

fn base(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        .pragma("trusted_schema", "OFF"))
}

/// The sqlx writer: creates the file, WAL, incremental auto-vacuum, the write pragmas.
pub(crate) fn writer_options(
    path: &Path,
    synchronous_full: bool,
    max_size_bytes: Option<u64>,
) -> Result<SqliteConnectOptions, StoreError> {
    let mut o = base(path)?
        .create_if_missing(true)
        // auto_vacuum only takes effect before the first table exists; harmless later
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal });
    for (name, value) in WRITE_PRAGMAS {
        o = o.pragma(name, value);
    }
    o = o.pragma("cache_size", WriterCache::Normal.value());
    Ok(o.optimize_on_close(true, Some(400)).pragma("max_page_count", max_pages(max_size_bytes).to_string()))
}

/// A sqlx read-only connection (`mode=ro`, `query_only`; `immutable` when asked).
pub(crate) fn reader_options(path: &Path, access: Access) -> Result<SqliteConnectOptions, StoreError> {
    Ok(base(path)?
        .read_only(true)
        .immutable(access == Access::Immutable)
        .pragma("query_only", "ON")
        .busy_timeout(Duration::from_secs(1)))
}

/// A sqlx connection that never waits for a lock (the WAL trimmer).
pub(crate) fn no_wait_options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?.filename(path).busy_timeout(Duration::ZERO))
}

/// The writer's settings the bulk connection copies (they may differ per file or change at run
/// time), as its `PRAGMA synchronous` and `PRAGMA max_page_count` report them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterSettings {
    pub(crate) synchronous: i64,
    pub(crate) max_pages: i64,
}

/// The bulk-load connection: read-write, the writer's pragmas and settings.
/// The bulk connection's page cache.
const BULK_CACHE_KIB: i64 = 8192;

pub(crate) fn open_bulk(path: &Path, s: WriterSettings) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(classify_rusqlite)?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "synchronous", s.synchronous)?;
        conn.pragma_update(None, "max_page_count", s.max_pages)?;
        for (name, value) in WRITE_PRAGMAS {
            conn.pragma_update(None, name, value)?;
        }
        // Appends touch the right edge of each B-tree: a small cache holds them (the writer's
        // 32 MiB would double the process's memory during a backfill for nothing).
        conn.pragma_update(None, "cache_size", -BULK_CACHE_KIB)?;
        Ok(())
    };
    setup().map_err(classify_rusqlite)?;
    Ok(conn)
}

/// A rusqlite read-only connection (the SQL sandbox and export): `mode=ro` (or `immutable`),
/// `query_only`, untrusted schema, a page cache of `cache_kib`.
pub fn open_read_only(
    path: &Path,
    access: Access,
    busy: Duration,
    cache_kib: i64,
) -> Result<Connection, rusqlite::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(uri(path, access), flags)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "trusted_schema", false)?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(conn)
}

/// A `file:` URI for `path` (percent-encoding what a URI cannot hold as is).
fn uri(path: &Path, access: Access) -> String {
    let mut out = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'?' | b'#' | b'%' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(char::from(b)),
        }
    }
    let mode = if access == Access::Immutable { "?mode=ro&immutable=1" } else { "?mode=ro" };
    out.push_str(mode);
    out
}

/// A read-only connection failed because SQLite could not make or open the `-shm` file of a
/// WAL database (SQLITE_CANTOPEN, or SQLITE_READONLY_CANTINIT / _DIRECTORY): only an
/// immutable open can read it.
fn needs_immutable(e: &rusqlite::Error) -> bool {
    matches!(SqliteClass::of_rusqlite(e), SqliteClass::CantOpen | SqliteClass::ReadOnly)
}

/// What a file holds, as far as this binary is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// No file, or an empty one: a new database (for a writer).
    New,
    /// A blockstreamer database at this schema version, which this binary knows.
    Known { version: i32, latest: i32 },
}

/// The newest schema version compiled into this binary.
pub fn latest_version() -> i32 {
    super::migrate::runner().get_migrations().iter().map(refinery_core::Migration::version).max().unwrap_or(0)
}

/// Check, without writing anything, that `path` is absent, empty, or a blockstreamer database at
/// a schema version this binary knows. A readable SQLite file of another program, a file that is
/// not SQLite at all, and a database written by a newer blockstreamer are refused, each with a
/// message saying so.
pub fn inspect(path: &Path) -> Result<Schema, StoreError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Schema::New),
        Err(e) => return Err(StoreError::Open { path: shown, why: e.to_string() }),
        Ok(m) if m.is_dir() => return Err(StoreError::Open { path: shown, why: "is a directory".into() }),
        Ok(m) if m.len() == 0 => return Ok(Schema::New),
        Ok(_) => {}
    }
    // Read-only: nothing is written to the file. Immutable only when even the `-shm` beside it
    // cannot be made (a directory this user may not write).
    let read = |access| -> rusqlite::Result<(i64, bool, Option<i32>)> {
        let conn = open_read_only(path, access, Duration::from_secs(1), 2048)?;
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))?;
        let history: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'refinery_schema_history'",
            [],
            |r| r.get(0),
        )?;
        let version = if history > 0 {
            conn.query_row("SELECT max(version) FROM refinery_schema_history", [], |r| r.get(0))?
        } else {
            None
        };
        Ok((tables, history > 0, version))
    };
    let found = match read(Access::ReadOnly) {
        Err(e) if needs_immutable(&e) => read(Access::Immutable),
        other => other,
    };
    let not_ours = |why: String| StoreError::NotBlockstreamer { path: shown.clone(), why };
    let (tables, has_history, version) = found.map_err(|e| match SqliteClass::of_rusqlite(&e) {
        SqliteClass::Corrupt => not_ours("it is not a SQLite database".into()),
        _ => StoreError::Open { path: shown.clone(), why: e.to_string() },
    })?;
    if tables == 0 {
        return Ok(Schema::New);
    }
    if !has_history {
        return Err(not_ours(format!("it is a SQLite database with {tables} tables of another program")));
    }
    let latest = latest_version();
    match version {
        None => Err(not_ours("its schema history is empty".into())),
        Some(v) if v > latest => Err(StoreError::NewerSchema { path: shown, version: v, latest }),
        Some(version) => Ok(Schema::Known { version, latest }),
    }
}

/// Check that `path` is a blockstreamer database at exactly this binary's schema version, for a
/// reader that will never migrate it (`serve`, `sql`, `export`, `gaps`), and that it can be
/// read with `access`.
pub fn check_readable(path: &Path, access: Access) -> Result<(), StoreError> {
    let shown = path.display().to_string();
    match inspect(path)? {
        Schema::New if !path.exists() => return Err(StoreError::Missing(shown)),
        Schema::New => return Err(StoreError::NotBlockstreamer { path: shown, why: "it is empty".into() }),
        Schema::Known { version, latest } if version != latest => {
            return Err(StoreError::OlderSchema { path: shown, version, latest });
        }
        Schema::Known { .. } => {}
    }
    let probe = open_read_only(path, access, Duration::from_secs(1), 64)
        .and_then(|c| c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0)));
    match probe {
        Ok(_) => Ok(()),
        Err(e) if needs_immutable(&e) => Err(StoreError::Open {
            path: shown,
            why: format!(
                "{e}: SQLite cannot create its -shm file beside a WAL database in a directory this user \
                 may not write; pass --immutable if nothing writes the file while it is read"
            ),
        }),
        Err(e) => Err(StoreError::Open { path: shown, why: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_are_classified_by_their_primary_code() {
        assert_eq!(SqliteClass::of_code(13), SqliteClass::Full);
        assert_eq!(SqliteClass::of_code(10 | (12 << 8)), SqliteClass::Io, "SQLITE_IOERR_READ");
        assert_eq!(SqliteClass::of_code(8 | (1 << 8)), SqliteClass::ReadOnly, "SQLITE_READONLY_RECOVERY");
        assert_eq!(SqliteClass::of_code(26), SqliteClass::Corrupt);
        assert_eq!(SqliteClass::of_code(1), SqliteClass::Other);
    }

    #[test]
    fn uris_escape_what_a_uri_cannot_hold() {
        let u = uri(Path::new("/tmp/a?b#c%d.db"), Access::ReadOnly);
        assert_eq!(u, "file:/tmp/a%3Fb%23c%25d.db?mode=ro");
        assert!(uri(Path::new("x.db"), Access::Immutable).ends_with("?mode=ro&immutable=1"));
    }
}
