//! Decoded event tables as exports: their columns and page SQL, made from the ABI the file's
//! `event_tables` records (so exporting a decoded table needs no config).

use std::borrow::Cow;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;

use super::ExportError;
use super::read::sql_err;
use super::schema::{Column, EVENT_HEAD, EVENT_TAIL, EventExport, Kind, Table};
use crate::index::{ColumnKind, is_plain_name};

/// One parameter as `event_tables.columns` records it.
#[derive(Deserialize)]
struct Recorded {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    indexed: bool,
}

/// The decoded table `name` of this file; the error lists every table there is (stored ones
/// are resolved before the file is opened: `export::resolve`).
pub(crate) fn resolve_decoded(conn: &Connection, name: &str) -> Result<Table, ExportError> {
    let columns: Option<String> = conn
        .query_row(include_str!("../../sql/export/event_tables.sql"), [name], |r| r.get(0))
        .optional()
        .map_err(sql_err)?;
    let Some(columns) = columns else {
        let mut known: Vec<String> = Table::STORED.iter().map(|t| t.name().to_string()).collect();
        known.extend(event_table_names(conn)?);
        return Err(ExportError::UnknownTable(format!("unknown table {name:?}; expected one of {}", known.join(", "))));
    };
    let recorded: Vec<Recorded> = serde_json::from_str(&columns)
        .map_err(|e| ExportError::Sql(format!("event_tables.columns of {name} is not what this build wrote: {e}")))?;
    Ok(Table::Events(Arc::new(event_export(name, &recorded)?)))
}

/// The decoded tables of this file, by name.
pub(crate) fn event_table_names(conn: &Connection) -> Result<Vec<String>, ExportError> {
    // A file made before decoded tables existed has no registry: it has no decoded tables.
    let Ok(mut stmt) = conn.prepare(include_str!("../../sql/export/event_table_names.sql")) else {
        return Ok(Vec::new());
    };
    let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sql_err)?;
    names.collect::<Result<Vec<_>, _>>().map_err(sql_err)
}

/// Columns and SQL of decoded table `name` with these parameters.
fn event_export(name: &str, params: &[Recorded]) -> Result<EventExport, ExportError> {
    let bad = |why: String| ExportError::Sql(format!("decoded table {name}: {why}"));
    // Generated names only ever hold these; anything else in the file is refused, not quoted.
    if !is_plain_name(name) {
        return Err(bad("the name is not one this build makes".into()));
    }
    let mut columns: Vec<Column> = EVENT_HEAD.to_vec();
    let mut selected = Vec::new();
    for p in params {
        if !is_plain_name(&p.name) {
            return Err(bad(format!("parameter name {:?} is not one this build makes", p.name)));
        }
        let kind = ColumnKind::for_type(&p.ty, p.indexed).ok_or_else(|| bad(format!("unknown type {}", p.ty)))?;
        let (export, stored) = match kind {
            ColumnKind::Address => (Kind::Address, p.name.clone()),
            ColumnKind::Bool => (Kind::Bool, p.name.clone()),
            ColumnKind::Int => (Kind::I64, p.name.clone()),
            // The exact value; the sortable form is for SQL over the file, not for files.
            ColumnKind::Big { .. } => (Kind::Decimal, format!("{}_dec", p.name)),
            ColumnKind::TopicHash => (Kind::Hash, p.name.clone()),
            ColumnKind::FixedBytes | ColumnKind::Bytes => (Kind::Bytes, p.name.clone()),
            ColumnKind::Text | ColumnKind::Json => (Kind::Text, p.name.clone()),
        };
        columns.push(Column { name: Cow::Owned(p.name.clone()), kind: export, nullable: false });
        selected.push(format!("e.\"{stored}\""));
    }
    columns.extend_from_slice(EVENT_TAIL);
    let params = if selected.is_empty() { String::new() } else { format!("{}, ", selected.join(", ")) };
    let page_sql = format!(
        "-- export page of {name}\n\
         SELECT e.block_number, b.hash, l.tx_idx, e.log_index, l.tx_hash, l.address, {params}b.timestamp, b.canonical,\n       \
         e.block_number, e.block_id, e.log_index\n\
         FROM \"{name}\" e\n\
         JOIN blocks b ON b.id = e.block_id\n\
         JOIN logs l ON l.block_id = e.block_id AND l.log_index = e.log_index\n\
         WHERE e.block_number >= ?4 AND (e.block_number, e.block_id, e.log_index) > (?4, ?5, ?6)\n  \
         AND e.block_number <= ?1 AND (?2 OR b.canonical = 1)\n\
         ORDER BY e.block_number, e.block_id, e.log_index\n\
         LIMIT ?3"
    );
    let bounds_sql = format!(
        "SELECT min(e.block_number), max(e.block_number) FROM \"{name}\" e \
         JOIN blocks b ON b.id = e.block_id WHERE ?1 OR b.canonical = 1"
    );
    Ok(EventExport { name: name.to_string(), columns, page_sql, bounds_sql })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, ty: &str, indexed: bool) -> Recorded {
        Recorded { name: name.into(), ty: ty.into(), indexed }
    }

    #[test]
    fn columns_follow_the_abi_and_odd_names_are_refused() {
        let e = event_export(
            "evt_tok_transfer",
            &[rec("from", "address", true), rec("value", "uint256", false), rec("tag", "string", true)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = e.columns.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "block_number",
                "block_hash",
                "transaction_index",
                "log_index",
                "transaction_hash",
                "address",
                "from",
                "value",
                "tag",
                "block_timestamp",
                "canonical"
            ]
        );
        assert_eq!(e.columns[7].kind, Kind::Decimal);
        assert_eq!(e.columns[8].kind, Kind::Hash, "an indexed string is its hash");
        assert!(e.page_sql.contains("e.\"value_dec\""), "{}", e.page_sql);
        assert!(event_export("evt\"; DROP", &[]).is_err());
        assert!(event_export("evt_a", &[rec("x\"y", "uint8", false)]).is_err());
        assert!(event_export("evt_a", &[rec("x", "uint7x", false)]).is_err());
    }
}
