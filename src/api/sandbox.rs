//! The read-only SQL sandbox behind `POST /v1/sql`: one SELECT at a time on separate read-only
//! rusqlite connections, a default-deny authorizer, SQLite limits, a deadline inside SQLite,
//! row and byte caps and a concurrency cap.
//!
//! Defence in depth (the SQL sandbox rules of docs/http-api.md): opened `SQLITE_OPEN_READ_ONLY`, `query_only`,
//! `trusted_schema=OFF`, `SQLITE_DBCONFIG_DEFENSIVE`; the authorizer allows only SELECT, reads of
//! user tables and views, functions from an allowlist and recursive CTEs, so `ATTACH`,
//! `VACUUM INTO`, `PRAGMA` and every write are refused before they touch a file; exactly one
//! statement, and SQLite must agree it is read-only. A dropped future does not stop a running
//! statement, so the deadline is a progress handler inside SQLite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;

use crate::store::Access;
use crate::store::sqlite::SqliteClass;
use thiserror::Error;
use tokio::sync::Semaphore;

/// Why a query was refused or stopped.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SandboxError {
    #[error("only one SELECT statement is allowed")]
    NotOneStatement,
    #[error("the SQL holds no statement (only whitespace or comments)")]
    Empty,
    #[error("only read-only SELECT statements are allowed")]
    NotReadOnly,
    #[error("not allowed: {0}")]
    Denied(String),
    #[error("the query ran past its {0} ms limit and was stopped")]
    Timeout(u64),
    #[error("the result passed the {0} byte limit")]
    TooLarge(usize),
    #[error("a value or the SQL text is larger than allowed: {0}")]
    TooBig(String),
    #[error("{0}")]
    Sql(String),
    #[error("bad parameter {index}: {message}")]
    Param { index: usize, message: String },
    #[error("too many SQL queries running ({0}); try again shortly")]
    Busy(usize),
    #[error("sandbox unavailable: {0}")]
    Internal(String),
}

/// Limits of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    pub max_bytes: usize,
    pub concurrency: usize,
}

impl SandboxLimits {
    /// The limits of `POST /v1/sql`, from the `[api]` table.
    pub fn from_api(c: &crate::config::ApiConfig) -> Self {
        Self {
            timeout: Duration::from_millis(c.sql_timeout_ms),
            max_rows: c.sql_max_rows,
            max_bytes: c.sql_max_bytes,
            concurrency: c.sql_concurrency,
        }
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self::from_api(&crate::config::ApiConfig::default())
    }
}

/// A query result: column names and rows of JSON values (blobs as 0x hex).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows existed past `max_rows`.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl QueryResult {
    /// RFC 4180 CSV with a header row: fields holding a comma, quote, CR or LF are quoted;
    /// NULL is an empty field.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let header = self.columns.iter().map(|c| serde_json::Value::String(c.clone())).collect::<Vec<_>>();
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let text = cell_text(v);
                if text.contains([',', '"', '\n', '\r']) {
                    out.push('"');
                    out.push_str(&text.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(&text);
                }
            }
            out.push_str("\r\n");
        }
        out
    }

    /// One JSON object per row (column name → value), as a JSON array.
    pub fn to_json_objects(&self) -> serde_json::Value {
        let rows = self.rows.iter().map(|row| {
            let obj: serde_json::Map<String, serde_json::Value> =
                self.columns.iter().cloned().zip(row.iter().cloned()).collect();
            serde_json::Value::Object(obj)
        });
        serde_json::Value::Array(rows.collect())
    }

    /// An aligned text table for a terminal: numbers right-aligned, NULL shown as `NULL`.
    pub fn to_table(&self) -> String {
        let cells: Vec<Vec<(String, bool)>> = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| match v {
                        serde_json::Value::Null => ("NULL".to_string(), false),
                        serde_json::Value::Number(_) => (v.to_string(), true),
                        other => (cell_text(other).replace(['\n', '\r'], " "), false),
                    })
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &cells {
            for (w, (t, _)) in widths.iter_mut().zip(r) {
                *w = (*w).max(t.chars().count());
            }
        }
        let mut out = String::new();
        let pad = |out: &mut String, text: &str, w: usize, right: bool| {
            let fill = " ".repeat(w.saturating_sub(text.chars().count()));
            if right {
                out.push_str(&fill);
                out.push_str(text);
            } else {
                out.push_str(text);
                out.push_str(&fill);
            }
        };
        for (i, (c, w)) in self.columns.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str(" | ");
            }
            pad(&mut out, c, *w, false);
        }
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("-+-"));
        out.push('\n');
        for r in &cells {
            for (i, ((t, right), w)) in r.iter().zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                pad(&mut out, t, *w, *right);
            }
            out.push('\n');
        }
        out
    }
}

/// SQL functions a query may call. Everything else (load_extension, readfile, writefile,
/// fts3_tokenizer, sqlite_* internals, randomblob, zeroblob…) is denied. printf/format are
/// out too: past the length limit they quietly return NULL instead of failing, so a
/// billion-character request could not be told apart from a real NULL.
const FUNCTIONS: &[&str] = &[
    "abs",
    "avg",
    "cast",
    "ceil",
    "ceiling",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "date",
    "datetime",
    "dense_rank",
    "exp",
    "first_value",
    "floor",
    "glob",
    "group_concat",
    "hex",
    "iif",
    "if",
    "ifnull",
    "instr",
    "json",
    "json_array",
    "json_array_length",
    "json_extract",
    "json_group_array",
    "json_group_object",
    "json_object",
    "json_type",
    "json_valid",
    "julianday",
    "lag",
    "last_value",
    "lead",
    "length",
    "like",
    "likelihood",
    "likely",
    "ln",
    "log",
    "log10",
    "log2",
    "lower",
    "ltrim",
    "max",
    "median",
    "min",
    "mod",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "percent_rank",
    "percentile",
    "percentile_cont",
    "percentile_disc",
    "pi",
    "pow",
    "power",
    "quote",
    "rank",
    "replace",
    "round",
    "row_number",
    "rtrim",
    "sign",
    "sqrt",
    "strftime",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "time",
    "timediff",
    "total",
    "trim",
    "trunc",
    "typeof",
    "unhex",
    "unicode",
    "unixepoch",
    "unlikely",
    "upper",
];

/// Tables a query may not read (SQLite internals, pragma and dbstat virtual tables).
fn table_denied(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("sqlite_") || n.starts_with("pragma_") || n == "dbstat"
}

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Read { table_name, .. } if !table_denied(table_name) => Authorization::Allow,
        AuthAction::Function { function_name } if FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str()) => {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

fn open(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    // A small page cache: the sandbox must not grow the process by much.
    let conn = crate::store::sqlite::open_read_only(path, access, Duration::from_secs(1), 8192)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    for (limit, value) in [
        (Limit::SQLITE_LIMIT_LENGTH, 1_000_000),
        (Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000),
        (Limit::SQLITE_LIMIT_COLUMN, 100),
        (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
        (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 20),
        (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 100),
        (Limit::SQLITE_LIMIT_ATTACHED, 0),
        (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000),
        (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 1),
    ] {
        conn.set_limit(limit, value)?;
    }
    // Last: the pragmas above would themselves be denied.
    conn.authorizer(Some(authorize))?;
    Ok(conn)
}

/// The sandbox: a few pooled connections and a cap on concurrent queries.
#[derive(Debug)]
pub struct Sandbox {
    path: PathBuf,
    access: Access,
    limits: SandboxLimits,
    pool: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Sandbox {
    /// A sandbox over the database file at `path` (connections are opened on first use,
    /// read-only or immutable as `access` says; never read-write).
    pub fn new(path: impl Into<PathBuf>, access: Access, limits: SandboxLimits) -> Self {
        let permits = Arc::new(Semaphore::new(limits.concurrency.max(1)));
        Self { path: path.into(), access, limits, pool: Arc::default(), permits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Run one read-only statement with positional parameters. Refuses at once (`Busy`) when
    /// the concurrency cap is reached; runs on a blocking thread.
    pub async fn query(&self, sql: String, params: Vec<serde_json::Value>) -> Result<QueryResult, SandboxError> {
        let permit =
            self.permits.clone().try_acquire_owned().map_err(|_| SandboxError::Busy(self.limits.concurrency))?;
        let pool = self.pool.clone();
        let (path, access) = (self.path.clone(), self.access);
        let limits = self.limits.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.lock().ok().and_then(|mut p| p.pop()) {
                Some(c) => c,
                None => open(&path, access).map_err(|e| SandboxError::Internal(e.to_string()))?,
            };
            let out = run(&conn, &sql, &params, &limits);
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            if let Ok(mut p) = pool.lock() {
                p.push(conn);
            }
            out
        })
        .await
        .map_err(|e| SandboxError::Internal(e.to_string()))?
    }

    /// Check that every pooled connection still reports `query_only = 1` (nothing a query did
    /// turned it off). Returns how many connections were checked.
    pub fn self_check(&self) -> Result<usize, SandboxError> {
        let pool = self.pool.lock().map_err(|_| SandboxError::Internal("pool poisoned".into()))?;
        for c in pool.iter() {
            c.authorizer(None::<fn(AuthContext<'_>) -> Authorization>).map_err(internal)?;
            let v: rusqlite::Result<i64> = c.query_row("PRAGMA query_only", [], |r| r.get(0));
            c.authorizer(Some(authorize)).map_err(internal)?;
            if v.map_err(internal)? != 1 {
                return Err(SandboxError::Internal("a sandbox connection lost query_only".into()));
            }
        }
        Ok(pool.len())
    }
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(internal)
fn internal(e: rusqlite::Error) -> SandboxError {
    SandboxError::Internal(e.to_string())
}

fn classify(e: &rusqlite::Error, limits: &SandboxLimits) -> SandboxError {
    let msg = match e {
        rusqlite::Error::MultipleStatement => return SandboxError::NotOneStatement,
        rusqlite::Error::SqliteFailure(_, msg) => msg.clone(),
        _ => return SandboxError::Sql(e.to_string()),
    };
    match SqliteClass::of_rusqlite(e) {
        SqliteClass::Interrupted => {
            SandboxError::Timeout(u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX))
        }
        SqliteClass::Denied => SandboxError::Denied(msg.unwrap_or_else(|| "not authorized".into())),
        SqliteClass::TooBig => SandboxError::TooBig(msg.unwrap_or_else(|| "string or blob too big".into())),
        SqliteClass::ReadOnly => SandboxError::NotReadOnly,
        // What SQLite says when the text held no statement at all.
        SqliteClass::Misuse => SandboxError::Empty,
        // A denied function or table comes back as a plain SQLITE_ERROR with this text.
        _ => match msg {
            Some(m) if m.starts_with("not authorized") => SandboxError::Denied(m),
            Some(m) => SandboxError::Sql(m),
            None => SandboxError::Sql(e.to_string()),
        },
    }
}

fn bind_value(v: &serde_json::Value, index: usize) -> Result<rusqlite::types::Value, SandboxError> {
    use rusqlite::types::Value;
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Integer(i),
            // An integer past SQLite's 64-bit range would be bound as an inexact float and
            // compare unequal to the stored value (wei above 2^63 is stored as decimal text).
            (None, Some(f)) if n.is_u64() || (f.fract() == 0.0 && f.abs() >= 9_007_199_254_740_992.0) => {
                return Err(SandboxError::Param {
                    index,
                    message: format!(
                        "{n} is an integer outside SQLite's 64-bit range and would lose precision; pass it as a string (\"{n}\")"
                    ),
                });
            }
            (None, Some(f)) => Value::Real(f),
            _ => return Err(SandboxError::Param { index, message: "number out of range".into() }),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        _ => {
            return Err(SandboxError::Param { index, message: "must be null, a boolean, a number or a string".into() });
        }
    })
}

fn json_value(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => alloy_primitives::hex::encode_prefixed(b).into(),
    }
}

fn run(
    conn: &Connection,
    sql: &str,
    params: &[serde_json::Value],
    limits: &SandboxLimits,
) -> Result<QueryResult, SandboxError> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    // Installed before prepare: preparing can be slow too (huge schemas, deep expressions).
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline)).map_err(internal)?;
    let mut stmt = conn.prepare(sql).map_err(|e| classify(&e, limits))?;
    if !stmt.readonly() {
        return Err(SandboxError::NotReadOnly);
    }
    if stmt.parameter_count() != params.len() {
        return Err(SandboxError::Param {
            index: params.len(),
            message: format!("the statement takes {} parameters, {} given", stmt.parameter_count(), params.len()),
        });
    }
    for (i, p) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, bind_value(p, i)?).map_err(|e| classify(&e, limits))?;
    }
    let columns: Vec<String> = stmt.column_names().iter().map(|c| (*c).to_string()).collect();
    let ncols = columns.len();
    let mut bytes = columns.iter().map(|c| c.len() + 3).sum::<usize>();
    let mut out = Vec::new();
    let mut truncated = false;
    let mut rows = stmt.raw_query();
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(classify(&e, limits)),
        };
        if out.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut vals = Vec::with_capacity(ncols);
        for i in 0..ncols {
            let v = row.get_ref(i).map_err(|e| classify(&e, limits))?;
            bytes += match v {
                ValueRef::Text(t) => t.len() + 3,
                ValueRef::Blob(b) => b.len() * 2 + 5,
                _ => 21,
            };
            vals.push(json_value(v));
        }
        if bytes > limits.max_bytes {
            return Err(SandboxError::TooLarge(limits.max_bytes));
        }
        out.push(vals);
    }
    Ok(QueryResult { columns, rows: out, truncated, elapsed_ms: started.elapsed().as_secs_f64() * 1000.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_render_as_csv_json_and_a_table() {
        let r = QueryResult {
            columns: vec!["name".into(), "n".into()],
            rows: vec![
                vec![serde_json::json!("a,b"), serde_json::json!(10)],
                vec![serde_json::json!("say \"hi\""), serde_json::Value::Null],
            ],
            truncated: false,
            elapsed_ms: 0.0,
        };
        assert_eq!(r.to_csv(), "name,n\r\n\"a,b\",10\r\n\"say \"\"hi\"\"\",\r\n");
        assert_eq!(
            r.to_json_objects(),
            serde_json::json!([{"name": "a,b", "n": 10}, {"name": "say \"hi\"", "n": null}])
        );
        assert_eq!(r.to_table(), "name     | n   \n---------+-----\na,b      |   10\nsay \"hi\" | NULL\n");
    }

    #[test]
    fn internal_tables_are_denied() {
        assert!(table_denied("sqlite_schema") && table_denied("SQLITE_MASTER") && table_denied("pragma_table_info"));
        assert!(table_denied("dbstat") && !table_denied("blocks") && !table_denied("provider_requests_view"));
    }

    #[test]
    fn dangerous_functions_are_not_allowed() {
        for f in ["load_extension", "readfile", "writefile", "randomblob", "zeroblob", "fts3_tokenizer", "printf"] {
            assert!(!FUNCTIONS.contains(&f), "{f}");
        }
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    #[tokio::test]
    async fn the_authorizer_refuses_unlisted_functions() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        {
            let c = Connection::open(&path).expect("open");
            c.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);").expect("setup");
        }
        let sb = Sandbox::new(&path, Access::ReadOnly, SandboxLimits::default());
        let r = sb.query("SELECT printf('%d', x) FROM t".into(), vec![]).await;
        assert!(matches!(r, Err(SandboxError::Denied(_))), "{r:?}");
        let r = sb.query("SELECT abs(x) FROM t".into(), vec![]).await;
        assert!(r.is_ok(), "{r:?}");
        // No statement at all: said so, not SQLite's "bad parameter or other API misuse".
        for empty in ["-- nothing", "/* only a comment */", " ;"] {
            let r = sb.query(empty.into(), vec![]).await;
            assert!(matches!(r, Err(SandboxError::Empty)), "{empty:?}: {r:?}");
        }
        // Integers past 2^63 are refused, not bound as inexact floats.
        for big in [serde_json::json!(9_223_372_036_854_775_808u64), serde_json::json!(1e20)] {
            let r = sb.query("SELECT ?1".into(), vec![big.clone()]).await;
            assert!(
                matches!(&r, Err(SandboxError::Param { message, .. }) if message.contains("string")),
                "{big}: {r:?}"
            );
        }
        let r = sb.query("SELECT ?1, ?2".into(), vec![serde_json::json!(i64::MAX), serde_json::json!(1.5)]).await;
        assert!(r.is_ok(), "{r:?}");
    }
}
