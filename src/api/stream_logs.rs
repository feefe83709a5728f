//! `GET /v1/stream/logs`: Server-Sent Events of the logs of new canonical blocks that match an
//! `eth_getLogs`-style filter, resumable, with reorgs told as `eth_subscribe("logs")` does: each
//! log of a dropped block is sent again with `removed: true` (newest first, undo order) before
//! the logs of the replacement blocks.
//!
//! Like the block stream it reads from the database only: the cursor is the last block whose
//! logs were sent (and, after a resume in the middle of a block, the last log index sent). The
//! old branch is walked by parent hash through the orphaned blocks, which keep their logs.
//! Event ids are `number:hash:log_index`.

use std::convert::Infallible;

use alloy_primitives::hex;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures::Stream;
use tokio::sync::mpsc;

use super::blocks::{Params, params, parse_hash, parse_uint, uint_param};
use super::body::StreamLog;
use super::logs::alternatives;
use super::stream::{not_too_far_behind, send, wait_for_commit};
use super::{ApiError, ApiState};
use crate::store::LogRow;

/// Blocks read per database page while catching up.
const PAGE: u32 = 200;

/// What a client asked for: any of `addresses`, per position any of `topics[i]`.
#[derive(Debug, Clone, Default)]
struct Filter {
    addresses: Vec<String>,
    topics: [Vec<String>; 4],
}

impl Filter {
    fn matches(&self, l: &LogRow) -> bool {
        (self.addresses.is_empty() || self.addresses.contains(&l.address))
            && self
                .topics
                .iter()
                .enumerate()
                .all(|(i, alts)| alts.is_empty() || l.topics.get(i).is_some_and(|t| alts.contains(t)))
    }
}

/// The last block whose logs were sent; `upto`: only logs up to this index were (a resume in
/// the middle of a block).
#[derive(Debug, Clone)]
struct Cursor {
    number: u64,
    hash: String,
    upto: Option<u64>,
}

/// `N:0xHASH` or `N:0xHASH:I`.
fn parse_id(s: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::BadRequest(format!("Last-Event-ID must be NUMBER:0xHASH[:LOG_INDEX], got {s:?}"));
    let mut parts = s.trim().split(':');
    let n = parse_uint(parts.next().ok_or_else(bad)?, "Last-Event-ID number")?;
    let h = parse_hash(parts.next().ok_or_else(bad)?, "Last-Event-ID hash")?;
    let upto = parts.next().map(|i| parse_uint(i, "Last-Event-ID log index")).transpose()?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Cursor { number: n, hash: hex::encode_prefixed(h), upto })
}

/// `GET /v1/stream/logs?address=&topic0=…&from=N`, resuming from `Last-Event-ID` when present.
pub(super) async fn logs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let map = params(q, &["address", "topic0", "topic1", "topic2", "topic3", "from"])?;
    let filter = Filter {
        addresses: alternatives::<20>(&map, "address")?.iter().map(hex::encode_prefixed).collect(),
        topics: [
            alternatives::<32>(&map, "topic0")?.iter().map(hex::encode_prefixed).collect(),
            alternatives::<32>(&map, "topic1")?.iter().map(hex::encode_prefixed).collect(),
            alternatives::<32>(&map, "topic2")?.iter().map(hex::encode_prefixed).collect(),
            alternatives::<32>(&map, "topic3")?.iter().map(hex::encode_prefixed).collect(),
        ],
    };
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().map_err(|_| ApiError::BadRequest("Last-Event-ID is not ASCII".into())))
        .transpose()?
        .filter(|s| !s.trim().is_empty());
    let (cursor, next) = match (last, uint_param(&map, "from")?) {
        (Some(id), _) => {
            let c = parse_id(id)?;
            let next = c.number + 1;
            (Some(c), next)
        }
        (None, Some(f)) => (None, f),
        (None, None) => (None, state.0.store.stored_tip().await?.map_or(0, |t| t.number + 1)),
    };
    Ok(super::stream::serve_events(move |tx| async move { produce(&state, &filter, cursor, next, &tx).await }))
}

fn log_event(l: LogRow, removed: bool, id: String) -> Result<Event, String> {
    let data = serde_json::to_string(&StreamLog { log: l, removed }).map_err(|e| e.to_string())?;
    Ok(Event::default().event("log").id(id).data(data))
}

/// Feed one client until it leaves, the server stops, or it falls too far behind.
async fn produce(
    state: &ApiState,
    filter: &Filter,
    mut cursor: Option<Cursor>,
    mut next: u64,
    tx: &mpsc::Sender<Event>,
) -> Result<(), String> {
    let store = &state.0.store;
    let mut changes = store.subscribe_changes();
    let cancel = state.0.cancel.clone();
    let wait = state.0.opts.stream_send_timeout;
    let db = |e: crate::store::StoreError| format!("database error: {e}");
    let mut live = false;
    loop {
        if let Some(c) = cursor.clone() {
            let at = store.canonical_hash_at(c.number).await.map_err(db)?;
            if at.map(hex::encode_prefixed).as_deref() != Some(c.hash.as_str()) {
                match unwind(state, filter, &c, tx).await? {
                    Some(fork) => {
                        next = fork.number + 1;
                        cursor = Some(fork);
                    }
                    None => return Ok(()),
                }
            } else if let Some(upto) = c.upto {
                // Resumed in the middle of a block: the rest of its logs.
                let h = parse_hash(&c.hash, "cursor").map_err(|e| e.to_string())?;
                for l in store.block_logs(&h).await.map_err(db)? {
                    if l.log_index > upto && filter.matches(&l) {
                        let id = format!("{}:{}:{}", l.block_number, l.block_hash, l.log_index);
                        if !send(tx, log_event(l, false, id)?, wait).await? {
                            return Ok(());
                        }
                    }
                }
                cursor = Some(Cursor { upto: None, ..c });
            }
        }
        if live {
            not_too_far_behind(state, next).await?;
        }
        let rows = store.blocks_range(next, i64::MAX.unsigned_abs(), PAGE, false).await.map_err(db)?;
        let mut stalled = rows.len() < usize::try_from(PAGE).unwrap_or(usize::MAX);
        for b in rows {
            let linked = cursor.as_ref().is_none_or(|c| b.parent_hash == c.hash);
            if b.number != next || !linked {
                stalled = true;
                break;
            }
            let h = parse_hash(&b.hash, "block hash").map_err(|e| e.to_string())?;
            let logs = if b.tx_count == 0 { Vec::new() } else { store.block_logs(&h).await.map_err(db)? };
            for l in logs.into_iter().filter(|l| filter.matches(l)) {
                let id = format!("{}:{}:{}", l.block_number, l.block_hash, l.log_index);
                if !send(tx, log_event(l, false, id)?, wait).await? {
                    return Ok(());
                }
            }
            cursor = Some(Cursor { number: b.number, hash: b.hash, upto: None });
            next = b.number + 1;
        }
        if !stalled {
            continue;
        }
        live = true;
        if !wait_for_commit(&cancel, tx.closed(), &mut changes).await? {
            return Ok(());
        }
    }
}

/// The cursor's block left the canonical chain: send every matching log of the dropped blocks
/// (the old branch, walked by parent hash down to the fork point) with `removed: true`, newest
/// first. Returns the fork point as the new cursor (`None`: the client left).
async fn unwind(
    state: &ApiState,
    filter: &Filter,
    c: &Cursor,
    tx: &mpsc::Sender<Event>,
) -> Result<Option<Cursor>, String> {
    let store = &state.0.store;
    let wait = state.0.opts.stream_send_timeout;
    let db = |e: crate::store::StoreError| format!("database error: {e}");
    let mine = parse_hash(&c.hash, "cursor hash").map_err(|e| e.to_string())?;
    let Some(branch) = store.dropped_branch(&mine).await.map_err(db)? else {
        return Err(format!(
            "resume point {}:{} is not in this database; reconnect with ?from=HEIGHT",
            c.number, c.hash
        ));
    };
    let fork = Cursor { number: branch.fork.0, hash: hex::encode_prefixed(branch.fork.1), upto: None };
    let id = format!("{}:{}", fork.number, fork.hash);
    for (i, b) in branch.blocks.iter().enumerate() {
        let at = parse_hash(&b.hash, "block hash").map_err(|e| e.to_string())?;
        let mut logs = store.block_logs(&at).await.map_err(db)?;
        logs.reverse();
        for l in logs.into_iter().filter(|l| filter.matches(l)) {
            // Only what the client was sent: after a mid-block resume, up to its last index.
            if i == 0 && c.upto.is_some_and(|u| l.log_index > u) {
                continue;
            }
            if !send(tx, log_event(l, true, id.clone())?, wait).await? {
                return Ok(None);
            }
        }
        metrics::counter!("blockstreamer_api_stream_removed_blocks_total").increment(1);
    }
    Ok(Some(fork))
}
