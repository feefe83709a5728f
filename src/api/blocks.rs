//! Chain routes: blocks (latest, by number, by hash, ranges with a cursor), a block's
//! transactions, a transaction by hash, reorgs and gaps.

use std::collections::BTreeMap;

use super::body::{Block, BlockTransactions, BlocksPage, GapRange, Gaps, ReorgsPage, Transaction};
use super::{ApiError, ApiState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

/// Query parameters, checked by hand so every mistake gets a precise message.
pub(super) type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;

pub(super) fn params(p: Params, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let Query(map) = p.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!("unknown parameter {k:?}; allowed: {}", allowed.join(", "))));
    }
    Ok(map)
}

/// A non-negative integer parameter (at most i64::MAX, what SQLite can hold).
pub(super) fn uint_param(map: &BTreeMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    map.get(key).map(|v| parse_uint(v, key)).transpose()
}

pub(super) fn parse_uint(v: &str, what: &str) -> Result<u64, ApiError> {
    let n: u64 = v
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{what} must be a non-negative decimal integer, got {v:?}")))?;
    if i64::try_from(n).is_err() {
        return Err(ApiError::BadRequest(format!("{what} = {n} is above the largest height ({})", i64::MAX)));
    }
    Ok(n)
}

/// `limit`: default `def`, 1..=`max`.
pub(super) fn limit_param(map: &BTreeMap<String, String>, def: u32, max: u32) -> Result<u32, ApiError> {
    match uint_param(map, "limit")? {
        None => Ok(def),
        Some(0) => Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => Ok(u32::try_from(n).unwrap_or(max).min(max)),
    }
}

/// The `cursor` of a newest-first page keyed by row id: read ids below it (all when absent).
pub(super) fn id_cursor(map: &BTreeMap<String, String>) -> Result<i64, ApiError> {
    Ok(uint_param(map, "cursor")?.map_or(i64::MAX, |c| i64::try_from(c).unwrap_or(i64::MAX)))
}

/// The next page's cursor: the last id, when the page came back full.
pub(super) fn next_id_cursor(len: usize, limit: u32, last_id: Option<i64>) -> Option<String> {
    (len == usize::try_from(limit).unwrap_or(usize::MAX)).then(|| last_id.map(|id| id.to_string())).flatten()
}

/// A 0x-prefixed 32-byte hash.
pub(super) fn parse_hash(s: &str, what: &str) -> Result<[u8; 32], ApiError> {
    let bad = || ApiError::BadRequest(format!("{what} must be 0x followed by 64 hex digits, got {s:?}"));
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).ok_or_else(bad)?;
    if hex.len() != 64 {
        return Err(bad());
    }
    let bytes = alloy_primitives::hex::decode(hex).map_err(|_| bad())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())
}

enum BlockId {
    Latest,
    Number(u64),
    Hash([u8; 32]),
}

fn block_id(s: &str) -> Result<BlockId, ApiError> {
    if s == "latest" {
        return Ok(BlockId::Latest);
    }
    if s.starts_with("0x") || s.starts_with("0X") {
        return Ok(BlockId::Hash(parse_hash(s, "block hash")?));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "block id must be a decimal height, a 0x-prefixed 32-byte hash or \"latest\", got {s:?}"
        )));
    }
    Ok(BlockId::Number(parse_uint(s, "block number")?))
}

/// `final=true|false` (default false): only blocks at least `confirmations` deep.
pub(super) fn final_param(map: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    match map.get("final").map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(v) => Err(ApiError::BadRequest(format!("final must be true or false, got {v:?}"))),
    }
}

/// The block `id` names (`latest`, a height, a hash); with `final_only`, only a final one
/// (`latest` is then the newest final block).
pub(super) async fn resolve(state: &ApiState, id: &str, final_only: bool) -> Result<Block, ApiError> {
    let store = &state.0.store;
    let final_height = store.final_height().await?;
    let found = match block_id(id)? {
        BlockId::Latest if final_only => match final_height {
            Some(f) => store.block_by_number(f).await?,
            None => return Err(ApiError::NotFound(not_final_yet(state, None).await?)),
        },
        BlockId::Latest => store.latest_block().await?,
        BlockId::Number(n) => store.block_by_number(n).await?,
        BlockId::Hash(h) => store.block_by_hash(&h).await?,
    };
    let row = found.ok_or_else(|| {
        ApiError::NotFound(if id == "latest" {
            "no block stored yet".into()
        } else {
            format!("block {id} is not stored")
        })
    })?;
    let block = Block::new(row, final_height);
    if final_only && !block.is_final {
        return Err(ApiError::NotFound(not_final_yet(state, Some(block.row.number)).await?));
    }
    Ok(block)
}

async fn not_final_yet(state: &ApiState, number: Option<u64>) -> Result<String, ApiError> {
    let c = state.0.store.confirmations().await?;
    let what = number.map_or_else(|| "no stored block".to_string(), |n| format!("block {n}"));
    Ok(format!("{what} is not final yet (final means {c} blocks under the stored tip, and canonical)"))
}

/// `GET /v1/blocks/latest?final=`
pub(super) async fn latest(State(state): State<ApiState>, q: Params) -> Result<Json<Block>, ApiError> {
    let map = params(q, &["final"])?;
    Ok(Json(resolve(&state, "latest", final_param(&map)?).await?))
}

/// `GET /v1/blocks/{latest|number|hash}?final=`
pub(super) async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<Block>, ApiError> {
    let map = params(q, &["final"])?;
    Ok(Json(resolve(&state, &id, final_param(&map)?).await?))
}

/// `GET /v1/blocks?from=&to=&limit=&cursor=&order=asc|desc&final=`
pub(super) async fn list(State(state): State<ApiState>, q: Params) -> Result<Json<BlocksPage>, ApiError> {
    let map = params(q, &["from", "to", "limit", "cursor", "order", "final"])?;
    let final_height = state.0.store.final_height().await?;
    let desc = match map.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(ApiError::BadRequest(format!("order must be asc or desc, got {o:?}"))),
    };
    let limit = limit_param(&map, 100, 1000)?;
    let mut from = uint_param(&map, "from")?.unwrap_or(0);
    let mut to = match uint_param(&map, "to")? {
        Some(t) => t,
        None => i64::MAX.unsigned_abs(),
    };
    if from > to {
        return Err(ApiError::BadRequest(format!("from ({from}) is above to ({to})")));
    }
    // The cursor is the next height to read, in the direction of `order`.
    if let Some(c) = map.get("cursor") {
        let c = parse_uint(c, "cursor")?;
        if desc { to = to.min(c) } else { from = from.max(c) }
    }
    let final_only = final_param(&map)?;
    let rows = match (final_only, final_height) {
        (true, None) => Vec::new(),
        (true, Some(f)) if from > f => Vec::new(),
        _ if from > to => Vec::new(),
        (true, Some(f)) => state.0.store.blocks_range(from, to.min(f), limit, desc).await?,
        (false, _) => state.0.store.blocks_range(from, to, limit, desc).await?,
    };
    let next = if rows.len() == usize::try_from(limit).unwrap_or(usize::MAX) {
        rows.last().and_then(|b| if desc { b.number.checked_sub(1) } else { Some(b.number + 1) })
    } else {
        None
    };
    let blocks = rows.into_iter().map(|r| Block::new(r, final_height)).collect();
    Ok(Json(BlocksPage { blocks, next_cursor: next.map(|n| n.to_string()) }))
}

/// `GET /v1/blocks/{latest|number|hash}/transactions?final=`
pub(super) async fn transactions(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<BlockTransactions>, ApiError> {
    let map = params(q, &["final"])?;
    let b = resolve(&state, &id, final_param(&map)?).await?.row;
    let hash = parse_hash(&b.hash, "block hash")?;
    let transactions = state.0.store.block_transactions(&hash).await?;
    Ok(Json(BlockTransactions {
        block_number: b.number,
        block_hash: b.hash,
        canonical: b.canonical,
        full_transactions: b.full_transactions,
        tx_count: b.tx_count,
        transactions,
    }))
}

/// `GET /v1/transactions/{hash}`: the canonical copy, plus the orphaned blocks it also sat in.
pub(super) async fn transaction(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
) -> Result<Json<Transaction>, ApiError> {
    let h = parse_hash(&hash, "transaction hash")?;
    let mut copies = state.0.store.transaction_by_hash(&h).await?.into_iter();
    let Some(tx) = copies.next() else {
        return Err(ApiError::NotFound(format!("transaction {hash} is not stored")));
    };
    Ok(Json(Transaction { tx, also_in_blocks: copies.map(|t| t.block_hash).collect() }))
}

/// `GET /v1/reorgs?limit=&cursor=` newest first; the cursor is the last id seen.
pub(super) async fn reorgs(State(state): State<ApiState>, q: Params) -> Result<Json<ReorgsPage>, ApiError> {
    let map = params(q, &["limit", "cursor"])?;
    let limit = limit_param(&map, 100, 1000)?;
    let rows = state.0.store.reorgs_page(id_cursor(&map)?, limit).await?;
    let next = next_id_cursor(rows.len(), limit, rows.last().map(|r| r.id));
    Ok(Json(ReorgsPage { reorgs: rows, next_cursor: next }))
}

/// `GET /v1/gaps`: open holes and broken links now, and the latest repair attempts.
pub(super) async fn gaps(State(state): State<ApiState>, q: Params) -> Result<Json<Gaps>, ApiError> {
    let map = params(q, &["limit"])?;
    let limit = limit_param(&map, 20, 1000)?;
    let scan = state.0.store.scan_gaps().await?;
    let repairs = state.0.store.recent_repairs(limit).await?;
    let range = |&(from, to): &(u64, u64)| GapRange { from, to, blocks: to - from + 1 };
    Ok(Json(Gaps {
        floor: scan.floor,
        tip: scan.tip,
        missing: scan.missing.iter().map(range).collect(),
        broken_links: scan.broken_links,
        missing_receipts: scan.missing_receipts.iter().map(range).collect(),
        repairs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_parse_strictly() {
        assert!(matches!(block_id("0"), Ok(BlockId::Number(0))));
        assert!(matches!(block_id("latest"), Ok(BlockId::Latest)));
        assert!(matches!(block_id("9223372036854775807"), Ok(BlockId::Number(_))));
        for bad in ["", "-1", "+1", "1.5", "0x12", "9223372036854775808", "abc", " 1", "0x", "Latest"] {
            assert!(block_id(bad).is_err(), "{bad:?}");
        }
        let h = format!("0x{}", "ab".repeat(32));
        assert!(matches!(block_id(&h), Ok(BlockId::Hash(b)) if b == [0xab; 32]));
        assert!(block_id(&format!("0x{}", "zz".repeat(32))).is_err());
    }
}
