//! Log routes: logs by an `eth_getLogs`-style filter, a block's logs, a transaction's receipt,
//! the decoded tables and their rows (filtered by column), and the logs that did not decode.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};

use super::blocks::{Params, limit_param, params, parse_hash, parse_uint, resolve, uint_param};
use super::body::{BlockLogs, DecodeErrorsPage, EventRowsPage, EventTables, LogsPage, Receipt};
use super::{ApiError, ApiState};
use crate::store::{EventFilter, EventTableRow, IndexActivity, LogQuery};

/// Most alternatives one filter position may list.
const MAX_ALTERNATIVES: usize = 100;

/// `N:I`: after block N, log index I.
fn log_cursor(map: &BTreeMap<String, String>) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(c) = map.get("cursor") else { return Ok(None) };
    let bad = || ApiError::BadRequest(format!("cursor must be BLOCK:LOG_INDEX as next_cursor gives it, got {c:?}"));
    let (b, l) = c.split_once(':').ok_or_else(bad)?;
    Ok(Some((parse_uint(b, "cursor block")?, parse_uint(l, "cursor log index")?)))
}

fn next_log_cursor(len: usize, limit: u32, last: Option<(u64, u64)>) -> Option<String> {
    (len == usize::try_from(limit).unwrap_or(usize::MAX)).then_some(last).flatten().map(|(b, l)| format!("{b}:{l}"))
}

fn fixed<const N: usize>(s: &str, what: &str) -> Result<[u8; N], ApiError> {
    let bad = || ApiError::BadRequest(format!("{what} must be 0x followed by {} hex digits, got {s:?}", N * 2));
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).ok_or_else(bad)?;
    let bytes = alloy_primitives::hex::decode(hex).map_err(|_| bad())?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| bad())
}

/// A comma-separated list of alternatives (`topic0` may instead be one event signature).
pub(super) fn alternatives<const N: usize>(
    map: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<[u8; N]>, ApiError> {
    let Some(v) = map.get(key) else { return Ok(Vec::new()) };
    if key == "topic0" && v.contains('(') {
        let text = v.trim().strip_prefix("event ").unwrap_or(v.trim());
        let ev = alloy_json_abi::Event::parse(&format!("event {text}")).map_err(|e| {
            ApiError::BadRequest(format!("topic0 {v:?} is neither a topic nor an event signature: {e}"))
        })?;
        return fixed::<N>(&ev.selector().to_string(), key).map(|t| vec![t]);
    }
    let items: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.len() > MAX_ALTERNATIVES {
        return Err(ApiError::BadRequest(format!("{key} lists {} values; at most {MAX_ALTERNATIVES}", items.len())));
    }
    items.into_iter().map(|s| fixed::<N>(s, key)).collect()
}

/// The height range of `from`/`to` (or `from_block`/`to_block`; defaults: 0 and the stored tip).
async fn range(state: &ApiState, map: &BTreeMap<String, String>) -> Result<(u64, u64), ApiError> {
    let from = uint_param(map, "from_block")?.or(uint_param(map, "from")?).unwrap_or(0);
    let to = match uint_param(map, "to_block")?.or(uint_param(map, "to")?) {
        Some(t) => t,
        None => state.0.store.stored_tip().await?.map_or(0, |t| t.number),
    };
    if from > to && (map.contains_key("to") || map.contains_key("to_block")) {
        return Err(ApiError::BadRequest(format!("from ({from}) is above to ({to})")));
    }
    Ok((from, to))
}

/// `GET /v1/logs?address=&topic0=&topic1=&topic2=&topic3=&from=&to=&limit=&cursor=`
pub(super) async fn list(State(state): State<ApiState>, q: Params) -> Result<Json<LogsPage>, ApiError> {
    let map = params(
        q,
        &["address", "topic0", "topic1", "topic2", "topic3", "from", "to", "from_block", "to_block", "limit", "cursor"],
    )?;
    let limit = limit_param(&map, 100, 1000)?;
    let (from, to) = range(&state, &map).await?;
    let query = LogQuery {
        addresses: alternatives::<20>(&map, "address")?,
        topics: [
            alternatives::<32>(&map, "topic0")?,
            alternatives::<32>(&map, "topic1")?,
            alternatives::<32>(&map, "topic2")?,
            alternatives::<32>(&map, "topic3")?,
        ],
        from,
        to,
        after: log_cursor(&map)?,
        limit,
    };
    let logs = if from > to { Vec::new() } else { state.0.store.logs_page(&query).await? };
    let next = next_log_cursor(logs.len(), limit, logs.last().map(|l| (l.block_number, l.log_index)));
    Ok(Json(LogsPage { logs, next_cursor: next }))
}

/// `GET /v1/blocks/{latest|number|hash}/logs?final=`
pub(super) async fn of_block(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<BlockLogs>, ApiError> {
    let map = params(q, &["final"])?;
    let b = resolve(&state, &id, super::blocks::final_param(&map)?).await?.row;
    let hash = parse_hash(&b.hash, "block hash")?;
    let logs = state.0.store.block_logs(&hash).await?;
    Ok(Json(BlockLogs { block_number: b.number, block_hash: b.hash, canonical: b.canonical, logs }))
}

/// `GET /v1/transactions/{hash}/receipt`: the canonical copy, plus the orphaned blocks that
/// also held the transaction.
pub(super) async fn receipt(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let h = parse_hash(&hash, "transaction hash")?;
    let mut copies = state.0.store.receipt(&h).await?.into_iter();
    let Some(receipt) = copies.next() else {
        return Err(ApiError::NotFound(format!(
            "no receipt of transaction {hash} is stored (unknown, or receipts are not indexed: [index] receipts)"
        )));
    };
    Ok(Json(Receipt { receipt, also_in_blocks: copies.map(|r| r.block_hash).collect() }))
}

/// `GET /v1/event-tables`: the decoded tables, their columns and backfill state.
pub(super) async fn tables(State(state): State<ApiState>) -> Result<Json<EventTables>, ApiError> {
    Ok(Json(EventTables { tables: state.0.store.event_tables().await? }))
}

/// The comparison a `?column=value` asks for, by the column's kind.
fn column_filter(t: &EventTableRow, col: &str, value: &str) -> Result<(String, EventFilter), ApiError> {
    let cols = t.columns.as_array().map(Vec::as_slice).unwrap_or_default();
    let Some(c) = cols.iter().find(|c| c["name"] == col) else {
        let names: Vec<&str> = cols.iter().filter_map(|c| c["name"].as_str()).collect();
        return Err(ApiError::BadRequest(format!(
            "{} has no column {col:?}; filterable: {}, and from_block, to_block, limit, cursor",
            t.name,
            names.join(", ")
        )));
    };
    let kind = c["kind"].as_str().unwrap_or_default();
    let bad = |want: &str| ApiError::BadRequest(format!("{col} is {}: give {want}, got {value:?}", c["type"]));
    Ok(match kind {
        k if k.starts_with("Big") => {
            // The decimal text is canonical: compare it with the value written the same way.
            let text = if k.contains("signed: true") {
                value.parse::<alloy_primitives::I256>().map(|n| n.to_string()).ok()
            } else {
                value.parse::<alloy_primitives::U256>().map(|n| n.to_string()).ok()
            };
            (format!("{col}_dec"), EventFilter::Text(text.ok_or_else(|| bad("a decimal integer"))?))
        }
        "Int" => (col.to_string(), EventFilter::Int(value.parse().map_err(|_| bad("a decimal integer"))?)),
        "Bool" => match value {
            "true" | "1" => (col.to_string(), EventFilter::Int(1)),
            "false" | "0" => (col.to_string(), EventFilter::Int(0)),
            _ => return Err(bad("true or false")),
        },
        "Address" | "FixedBytes" | "Bytes" | "TopicHash" => {
            let hex = value.strip_prefix("0x").ok_or_else(|| bad("0x hex"))?;
            alloy_primitives::hex::decode(hex).map_err(|_| bad("0x hex"))?;
            (col.to_string(), EventFilter::Text(format!("0x{}", hex.to_ascii_lowercase())))
        }
        "Text" => (col.to_string(), EventFilter::Text(value.to_string())),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "{col} ({}) holds JSON and cannot be filtered here; use /v1/sql",
                c["type"]
            )));
        }
    })
}

/// `GET /v1/events/{table}?from=&to=&limit=&cursor=&<column>=<value>…` (`from_block` /
/// `to_block` for heights when the event has a `from` or `to` parameter).
pub(super) async fn rows(
    State(state): State<ApiState>,
    Path(table): Path<String>,
    q: Params,
) -> Result<Json<EventRowsPage>, ApiError> {
    let all = state.0.store.event_tables().await?;
    let name = table.strip_suffix("_view").unwrap_or(&table);
    let Some(t) = all.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        return Err(ApiError::NotFound(format!("no decoded table {table:?}; there are: {}", names.join(", "))));
    };
    let axum::extract::Query(mut map) = q.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    // A column named `from` or `to` (ERC-20 transfers) takes the name: heights are then
    // `from_block` / `to_block`.
    let mut filters = Vec::new();
    let is_column = |k: &str| t.columns.as_array().is_some_and(|c| c.iter().any(|c| c["name"] == k));
    for k in ["from", "to"] {
        if is_column(k)
            && let Some(v) = map.remove(k)
        {
            filters.push(column_filter(t, k, &v)?);
        }
    }
    let limit = limit_param(&map, 100, 1000)?;
    let (from, to) = range(&state, &map).await?;
    let fixed = ["from", "to", "from_block", "to_block", "limit", "cursor"];
    for (k, v) in map.iter().filter(|(k, _)| !fixed.contains(&k.as_str())) {
        filters.push(column_filter(t, k, v)?);
    }
    let after = log_cursor(&map)?;
    let rows =
        if from > to { Vec::new() } else { state.0.store.event_rows(t, &filters, (from, to), after, limit).await? };
    let last = rows.last().and_then(|r| Some((r.get("block_number")?.as_u64()?, r.get("log_index")?.as_u64()?)));
    let next = next_log_cursor(rows.len(), limit, last);
    Ok(Json(EventRowsPage { table: t.name.clone(), rows, next_cursor: next }))
}

/// `GET /v1/decode-errors?table=&limit=&cursor=` newest first.
pub(super) async fn decode_errors(
    State(state): State<ApiState>,
    q: Params,
) -> Result<Json<DecodeErrorsPage>, ApiError> {
    let map = params(q, &["table", "limit", "cursor"])?;
    let limit = limit_param(&map, 100, 1000)?;
    let table = map.get("table").map(|t| t.strip_suffix("_view").unwrap_or(t).to_string());
    let errors = state.0.store.decode_errors(table.as_deref(), log_cursor(&map)?, limit).await?;
    let next = next_log_cursor(errors.len(), limit, errors.last().map(|e| (e.block_number, e.log_index)));
    Ok(Json(DecodeErrorsPage { errors, next_cursor: next }))
}

/// `GET /v1/index/activity?blocks=60&minutes=10`: the last `blocks` canonical blocks' logs and
/// decoded events per table, the receipts and logs answers refused in the last `minutes` per
/// provider, and the decode errors (the dashboard's indexer panel).
pub(super) async fn activity(State(state): State<ApiState>, q: Params) -> Result<Json<IndexActivity>, ApiError> {
    let map = params(q, &["blocks", "minutes"])?;
    let blocks = uint_param(&map, "blocks")?.unwrap_or(60);
    let minutes = uint_param(&map, "minutes")?.unwrap_or(10);
    if !(1..=1000).contains(&blocks) {
        return Err(ApiError::BadRequest(format!("blocks must be within 1..=1000, got {blocks}")));
    }
    if !(1..=1440).contains(&minutes) {
        return Err(ApiError::BadRequest(format!("minutes must be within 1..=1440, got {minutes}")));
    }
    let since = crate::types::now_ms().saturating_sub(i64::try_from(minutes * 60_000).unwrap_or(i64::MAX));
    Ok(Json(state.0.store.index_activity(blocks, since).await?))
}
