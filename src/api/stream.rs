//! `GET /v1/stream/blocks`: Server-Sent Events of new canonical blocks and reorgs, resumable.
//!
//! Each client has a cursor (the height and hash of the last block it was sent). The producer
//! always reads from the database, never from an in-memory queue of commits: it first checks
//! that the cursor is still canonical (if not, it sends a `reorg` event naming the heights to
//! drop and moves the cursor back to the fork point), then sends the canonical blocks above
//! the cursor that link to it. A commit only wakes it up. So a replay from `Last-Event-ID` or
//! `?from=` turns into the live feed with no gap and no duplicate, whatever the timing.
//! Event ids are `number:hash`; a client that stops reading is cut off with a reason.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::hex;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use tokio::sync::mpsc;

use super::blocks::{Params, params, parse_hash, uint_param};
use super::body::{StreamError, StreamReorg};
use super::{ApiError, ApiState};

/// Blocks read per database page while catching up.
const PAGE: u32 = 200;
/// Heights listed one by one in a reorg event (the range is always given).
const MAX_LISTED: u64 = 1024;

/// The last block a client was sent; the hash as served (0x hex), so each new block's
/// `parent_hash` is compared without re-encoding.
#[derive(Debug, Clone)]
struct Cursor {
    number: u64,
    hash: String,
}

fn parse_last_event_id(s: &str) -> Result<(u64, Option<[u8; 32]>), ApiError> {
    let bad = || ApiError::BadRequest(format!("Last-Event-ID must be NUMBER or NUMBER:0xHASH, got {s:?}"));
    let (n, h) = match s.split_once(':') {
        Some((n, h)) => (n, Some(h)),
        None => (s, None),
    };
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if i64::try_from(n).is_err() {
        return Err(bad());
    }
    let h = h.map(|h| parse_hash(h.trim(), "Last-Event-ID hash")).transpose()?;
    Ok((n, h))
}

/// `GET /v1/stream/blocks[?from=N]`, resuming from `Last-Event-ID` when present.
pub(super) async fn blocks(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let map = params(q, &["from"])?;
    let from = uint_param(&map, "from")?;
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().map_err(|_| ApiError::BadRequest("Last-Event-ID is not ASCII".into())))
        .transpose()?
        .filter(|s| !s.trim().is_empty());
    let (cursor, next) = match (last, from) {
        (Some(id), _) => match parse_last_event_id(id)? {
            (n, Some(hash)) => (Some(Cursor { number: n, hash: hex::encode_prefixed(hash) }), n + 1),
            (n, None) => (None, n + 1),
        },
        (None, Some(f)) => (None, f),
        (None, None) => (None, state.0.store.stored_tip().await?.map_or(0, |t| t.number + 1)),
    };
    Ok(serve_events(move |tx| async move { produce(&state, cursor, next, &tx).await }))
}

/// Run `producer` for one client on its own task and stream what it sends; when it ends with
/// an error, the client gets `event: error` with the reason, then the stream closes.
pub(super) fn serve_events<F, Fut>(producer: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(mpsc::Sender<Event>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let (tx, rx) = mpsc::channel::<Event>(64);
    let reason: Arc<Mutex<Option<String>>> = Arc::default();
    let why = reason.clone();
    metrics::gauge!("blockstreamer_api_stream_clients").increment(1.0);
    tokio::spawn(async move {
        if let Err(e) = producer(tx).await {
            tracing::info!(reason = %e, "stream client disconnected");
            if let Ok(mut w) = why.lock() {
                *w = Some(e);
            }
        }
        metrics::gauge!("blockstreamer_api_stream_clients").decrement(1.0);
    });
    let stream = futures::stream::unfold((rx, reason, false), |(mut rx, reason, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(ev) => Some((Ok(ev), (rx, reason, false))),
            None => {
                let why = reason.lock().ok().and_then(|mut w| w.take())?;
                let data = serde_json::to_string(&StreamError { reason: &why }).unwrap_or_default();
                let ev = Event::default().event("error").data(data);
                Some((Ok(ev), (rx, reason, true)))
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Err (the reason to cut the client off) when the next height it needs is more than
/// `stream_max_lag_blocks` under the stored head.
pub(super) async fn not_too_far_behind(state: &ApiState, next: u64) -> Result<(), String> {
    let tip = state.0.store.stored_tip().await.map_err(|e| format!("database error: {e}"))?;
    match tip {
        Some(tip) if tip.number >= next && tip.number - next + 1 > state.0.opts.stream_max_lag_blocks => Err(format!(
            "slow consumer: {} blocks behind the stored head (limit {}); reconnect with Last-Event-ID",
            tip.number - next + 1,
            state.0.opts.stream_max_lag_blocks
        )),
        _ => Ok(()),
    }
}

/// Hand one event to the connection; `Ok(false)` when the client has gone.
/// An event that cannot be handed to the connection within `wait` means the client stopped
/// reading (its socket and our small queue are full).
pub(super) async fn send(tx: &mpsc::Sender<Event>, ev: Event, wait: Duration) -> Result<bool, String> {
    match tokio::time::timeout(wait, tx.send(ev)).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(_)) => Ok(false),
        Err(_) => Err(format!("slow consumer: nothing read for {} ms", wait.as_millis())),
    }
}

/// Feed one client until it leaves, the server stops, or it falls too far behind.
async fn produce(
    state: &ApiState,
    mut cursor: Option<Cursor>,
    mut next: u64,
    tx: &mpsc::Sender<Event>,
) -> Result<(), String> {
    let store = &state.0.store;
    let mut changes = store.subscribe_changes();
    let cancel = state.0.cancel.clone();
    let mut live = false;
    let wait = state.0.opts.stream_send_timeout;
    let db = |e: crate::store::StoreError| format!("database error: {e}");
    loop {
        if let Some(c) = cursor.clone() {
            let at = store.canonical_hash_at(c.number).await.map_err(db)?;
            if at.map(hex::encode_prefixed).as_deref() != Some(c.hash.as_str()) {
                let mine = parse_hash(&c.hash, "cursor hash").map_err(|e| e.to_string())?;
                match store.fork_point(&mine).await.map_err(db)? {
                    Some((f, fh)) if f < c.number => {
                        let heights: Vec<u64> =
                            if c.number - f <= MAX_LISTED { (f + 1..=c.number).collect() } else { Vec::new() };
                        let fork_hash = hex::encode_prefixed(fh);
                        let id = format!("{f}:{fork_hash}");
                        let data =
                            StreamReorg { fork_number: f, fork_hash, drop_from: f + 1, drop_to: c.number, heights };
                        let data = serde_json::to_string(&data).map_err(|e| e.to_string())?;
                        let ev = Event::default().event("reorg").id(id).data(data);
                        if !send(tx, ev, wait).await? {
                            return Ok(());
                        }
                        metrics::counter!("blockstreamer_api_stream_reorg_events_total").increment(1);
                        cursor = Some(Cursor { number: f, hash: hex::encode_prefixed(fh) });
                        next = f + 1;
                    }
                    // The block is canonical again under our feet, or not ours at all.
                    Some(_) => {}
                    None => {
                        return Err(format!(
                            "resume point {}:{} is not in this database; reconnect with ?from=HEIGHT",
                            c.number, c.hash
                        ));
                    }
                }
            }
        }
        // Once live, a client that reads slower than blocks arrive is let go, not buffered for.
        if live {
            not_too_far_behind(state, next).await?;
        }
        let rows = store.blocks_range(next, i64::MAX.unsigned_abs(), PAGE, false).await.map_err(db)?;
        let full = rows.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
        let mut stalled = !full;
        for b in rows {
            let linked = cursor.as_ref().is_none_or(|c| b.parent_hash == c.hash);
            // A hole (gap repair will fill it) or a branch that changed since we looked: wait
            // and look again rather than skip.
            if b.number != next || !linked {
                stalled = true;
                break;
            }
            let data = serde_json::to_string(&b).map_err(|e| e.to_string())?;
            let ev = Event::default().event("block").id(format!("{}:{}", b.number, b.hash)).data(data);
            if !send(tx, ev, wait).await? {
                return Ok(());
            }
            cursor = Some(Cursor { number: b.number, hash: b.hash });
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

/// Wait for the next commit (or a second: commits by another process, as under `serve` over a
/// file someone else writes, are polled). `Ok(false)`: the client left (`gone` resolved); Err:
/// shutting down.
pub(super) async fn wait_for_commit(
    cancel: &tokio_util::sync::CancellationToken,
    gone: impl std::future::Future<Output = ()>,
    changes: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<bool, String> {
    tokio::select! {
        () = cancel.cancelled() => Err("server shutting down".into()),
        () = gone => Ok(false),
        r = changes.changed() => if r.is_err() { Err("server shutting down".into()) } else { Ok(true) },
        () = tokio::time::sleep(Duration::from_secs(1)) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids_parse() {
        let h = format!("0x{}", "01".repeat(32));
        assert!(matches!(parse_last_event_id(&format!("12:{h}")), Ok((12, Some(x))) if x == [1; 32]));
        assert!(matches!(parse_last_event_id("7"), Ok((7, None))));
        for bad in ["", "x", "-1", "1:0x12", "18446744073709551615"] {
            assert!(parse_last_event_id(bad).is_err(), "{bad:?}");
        }
    }
}
