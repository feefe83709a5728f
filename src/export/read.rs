//! Read a table's key range from SQLite as Arrow record batches, one short read transaction
//! per page so a long export never holds back the WAL checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Int64Builder, StringBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};

use super::ExportError;
use super::schema::{Column, Kind, Table};
use crate::store::Access;

/// Rows per page (one read transaction each).
pub(crate) const PAGE_ROWS: usize = 8192;
/// A page also ends once its text and blob bytes pass this, so huge calldata stays bounded.
const PAGE_BYTES: usize = 16 << 20;

/// A read-only connection for exports (no writes possible, small cache).
pub(crate) fn open(path: &Path, access: Access) -> Result<Connection, ExportError> {
    crate::store::sqlite::open_read_only(path, access, Duration::from_secs(5), 16384)
        .map_err(|e| ExportError::Open(path.display().to_string(), e.to_string()))
}

/// The stored key bounds of a table (None when it has no rows).
pub(crate) fn bounds(
    conn: &Connection,
    table: &Table,
    include_orphaned: bool,
) -> Result<Option<(i64, i64)>, ExportError> {
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .query_row(table.bounds_sql(), [i64::from(include_orphaned)], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_err)?;
    Ok(lo.zip(hi))
}

/// The highest final height (the canonical tip minus the writer's `confirmations`), if any.
pub(crate) fn final_height(conn: &Connection) -> Result<Option<i64>, ExportError> {
    conn.query_row(include_str!("../../sql/export/final_height.sql"), [], |r| r.get(0)).map_err(sql_err)
}

/// How many heights in `lo..=hi` have a canonical block.
pub(crate) fn canonical_count(conn: &Connection, lo: i64, hi: i64) -> Result<i64, ExportError> {
    conn.query_row(include_str!("../../sql/export/canonical_count.sql"), [lo, hi], |r| r.get(0)).map_err(sql_err)
}

/// Where the reorg log ends now; [`reorged_since`] compares against it.
pub(crate) fn reorg_mark(conn: &Connection) -> Result<i64, ExportError> {
    conn.query_row(include_str!("../../sql/export/reorg_mark.sql"), [], |r| r.get(0)).map_err(sql_err)
}

/// The lowest fork point of the reorgs recorded after `mark`, if any.
pub(crate) fn reorged_since(conn: &Connection, mark: i64) -> Result<Option<i64>, ExportError> {
    conn.query_row(include_str!("../../sql/export/reorgs_since.sql"), [mark], |r| r.get(0)).map_err(sql_err)
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(sql_err)
pub(crate) fn sql_err(e: rusqlite::Error) -> ExportError {
    ExportError::Sql(e.to_string())
}

enum Builder {
    U64(UInt64Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Fixed(FixedSizeBinaryBuilder),
    Bytes(BinaryBuilder),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::U64 => Self::U64(UInt64Builder::with_capacity(PAGE_ROWS)),
            Kind::I64 => Self::I64(Int64Builder::with_capacity(PAGE_ROWS)),
            Kind::Bool => Self::Bool(BooleanBuilder::with_capacity(PAGE_ROWS)),
            Kind::Text | Kind::Wei | Kind::Decimal => Self::Text(StringBuilder::new()),
            Kind::Hash => Self::Fixed(FixedSizeBinaryBuilder::with_capacity(PAGE_ROWS, 32)),
            Kind::Address => Self::Fixed(FixedSizeBinaryBuilder::with_capacity(PAGE_ROWS, 20)),
            Kind::Bytes => Self::Bytes(BinaryBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::U64(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Fixed(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
        }
    }

    /// Append one stored value; Err(reason) when it does not fit the column's type.
    fn append(&mut self, col: &Column, v: ValueRef<'_>) -> Result<usize, String> {
        if let ValueRef::Null = v {
            if !col.nullable {
                return Err("NULL in a column that cannot be null".into());
            }
            match self {
                Self::U64(b) => b.append_null(),
                Self::I64(b) => b.append_null(),
                Self::Bool(b) => b.append_null(),
                Self::Text(b) => b.append_null(),
                Self::Fixed(b) => b.append_null(),
                Self::Bytes(b) => b.append_null(),
            }
            return Ok(0);
        }
        match (self, col.kind, v) {
            (Self::U64(b), _, ValueRef::Integer(i)) => {
                b.append_value(u64::try_from(i).map_err(|_| format!("negative value {i}"))?);
                Ok(8)
            }
            (Self::I64(b), _, ValueRef::Integer(i)) => {
                b.append_value(i);
                Ok(8)
            }
            (Self::Bool(b), _, ValueRef::Integer(i)) if i == 0 || i == 1 => {
                b.append_value(i == 1);
                Ok(1)
            }
            (Self::Text(b), Kind::Wei, ValueRef::Integer(i)) if i >= 0 => {
                b.append_value(i.to_string());
                Ok(20)
            }
            (Self::Text(b), Kind::Wei, ValueRef::Text(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| "wei text is not UTF-8".to_string())?;
                if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("wei text {s:?} is not a decimal number"));
                }
                b.append_value(s);
                Ok(s.len())
            }
            (Self::Text(b), Kind::Decimal, ValueRef::Text(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| "decimal text is not UTF-8".to_string())?;
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("{s:?} is not a decimal number"));
                }
                b.append_value(s);
                Ok(s.len())
            }
            (Self::Text(b), Kind::Text, ValueRef::Text(t)) => {
                b.append_value(String::from_utf8_lossy(t));
                Ok(t.len())
            }
            (Self::Fixed(b), _, ValueRef::Blob(x)) => {
                b.append_value(x)
                    .map_err(|_| format!("{} bytes where {:?} expects a fixed width", x.len(), col.kind))?;
                Ok(x.len())
            }
            (Self::Bytes(b), _, ValueRef::Blob(x)) => {
                b.append_value(x);
                Ok(x.len())
            }
            (_, kind, v) => Err(format!("a stored {:?} where {kind:?} was expected", v.data_type())),
        }
    }
}

/// Pages through one table's key range `lo..=hi`.
pub(crate) struct Pager<'c> {
    stmt: rusqlite::Statement<'c>,
    table: &'c Table,
    hi: i64,
    include_orphaned: bool,
    cursor: Vec<Value>,
    done: bool,
}

impl<'c> Pager<'c> {
    pub(crate) fn new(
        conn: &'c Connection,
        table: &'c Table,
        lo: i64,
        hi: i64,
        include_orphaned: bool,
    ) -> Result<Self, ExportError> {
        let stmt = conn.prepare(table.page_sql()).map_err(sql_err)?;
        // The cursor starts just below (lo, anything): the first key column is lo, the rest
        // i64::MIN, below every stored id (and every blob, which sorts after integers).
        Ok(Self { stmt, table, hi, include_orphaned, cursor: vec![Value::Integer(lo)], done: false })
    }

    /// The next page, or None at the end of the range.
    pub(crate) fn next_page(&mut self) -> Result<Option<RecordBatch>, ExportError> {
        if self.done {
            return Ok(None);
        }
        let cols = self.table.columns();
        let stmt = &mut self.stmt;
        let nparams = stmt.parameter_count();
        let cursor_len = nparams.saturating_sub(3);
        stmt.raw_bind_parameter(1, self.hi).map_err(sql_err)?;
        stmt.raw_bind_parameter(2, i64::from(self.include_orphaned)).map_err(sql_err)?;
        stmt.raw_bind_parameter(3, i64::try_from(PAGE_ROWS).unwrap_or(i64::MAX)).map_err(sql_err)?;
        for i in 0..cursor_len {
            let v = self.cursor.get(i).cloned().unwrap_or(Value::Integer(i64::MIN));
            stmt.raw_bind_parameter(4 + i, v).map_err(sql_err)?;
        }
        let mut builders: Vec<Builder> = cols.iter().map(|c| Builder::new(c.kind)).collect();
        let mut rows = 0usize;
        let mut bytes = 0usize;
        let mut last: Option<Vec<Value>> = None;
        {
            let mut it = stmt.raw_query();
            while let Some(row) = it.next().map_err(sql_err)? {
                for (i, (c, b)) in cols.iter().zip(builders.iter_mut()).enumerate() {
                    let v = row.get_ref(i).map_err(sql_err)?;
                    bytes += b.append(c, v).map_err(|reason| ExportError::BadValue {
                        table: self.table.name().to_string(),
                        column: c.name.to_string(),
                        reason,
                    })?;
                }
                rows += 1;
                if rows == PAGE_ROWS || bytes >= PAGE_BYTES {
                    let mut cur = Vec::with_capacity(cursor_len);
                    for j in 0..cursor_len {
                        cur.push(row.get::<_, Value>(cols.len() + j).map_err(sql_err)?);
                    }
                    last = Some(cur);
                    break;
                }
            }
        }
        // Dropping the statement's rows resets it, which ends this page's read transaction.
        match last {
            Some(cur) => self.cursor = cur,
            None => self.done = true,
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.table.schema(), arrays).map(Some).map_err(|e| ExportError::Encode(e.to_string()))
    }
}
