//! WebSocket on `/rpc`: the same calls as over HTTP, plus `eth_subscribe` / `eth_unsubscribe`.
//! Everything the client is sent goes through one queue bounded in bytes; a client that lets it
//! stay full for `[api] stream_send_timeout_ms` is cut off, the reason in the close frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::envelope::{RpcError, code};
use super::keys::Client;
use super::{envelope, params, subscribe};
use crate::api::ApiState;

/// Messages of one connection answered at once (more wait, and so does reading).
const IN_FLIGHT: usize = 16;

/// `GET /rpc` with `Upgrade: websocket`.
pub(in crate::api) async fn upgrade(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    accept(state, None, &headers, ws)
}

/// `GET /rpc/{key}` with `Upgrade: websocket`.
pub(in crate::api) async fn upgrade_keyed(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    accept(state, Some(&key), &headers, ws)
}

fn accept(state: ApiState, key: Option<&str>, headers: &HeaderMap, ws: WebSocketUpgrade) -> Response {
    let client = match state.0.rpc_keys.client(key, headers) {
        Ok(c) => c,
        Err(r) => return super::refused(&r),
    };
    let Ok(slot) = state.0.ws_slots.clone().try_acquire_owned() else {
        let max = state.0.opts.rpc.max_ws_connections;
        let e = RpcError::new(code::LIMIT, format!("{max} WebSocket connections are open ([rpc] max_ws_connections)"));
        return (StatusCode::SERVICE_UNAVAILABLE, envelope::error(None, &e)).into_response();
    };
    let max = state.0.opts.rpc.max_request_bytes;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let _slot = slot;
        connection(state, client, socket).await;
    })
}

/// One connection's outbound side, shared by its readers and subscription followers.
pub(in crate::api) struct Conn {
    tx: mpsc::UnboundedSender<(String, OwnedSemaphorePermit)>,
    /// Bytes the queue may still take.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    cut: CancellationToken,
    reason: Mutex<Option<String>>,
    subs: Mutex<HashMap<String, (tokio::task::AbortHandle, &'static str)>>,
    wait: Duration,
}

impl Conn {
    /// Queue one message. `false`: the client is gone, or was cut off now for not reading.
    pub(super) async fn send(&self, text: String) -> bool {
        if self.cut.is_cancelled() {
            return false;
        }
        // A message larger than the whole budget waits for an empty queue.
        let n = u32::try_from(text.len().clamp(1, self.budget_bytes)).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            () = self.cut.cancelled() => return false,
            p = tokio::time::timeout(self.wait, self.budget.clone().acquire_many_owned(n)) => p,
        };
        match permit {
            Ok(Ok(p)) => self.tx.send((text, p)).is_ok(),
            Ok(Err(_)) => false,
            Err(_) => {
                metrics::counter!("blockstreamer_rpc_ws_cutoffs_total", "reason" => "slow").increment(1);
                self.cut_off(format!(
                    "slow subscriber: {} bytes unread for {} ms",
                    self.budget_bytes,
                    self.wait.as_millis()
                ));
                false
            }
        }
    }

    /// End the connection, telling the client why (the first reason given wins).
    pub(super) fn cut_off(&self, reason: String) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(reason);
        }
        self.cut.cancel();
    }

    /// Resolves when the connection ends.
    pub(super) async fn closed(&self) {
        self.cut.cancelled().await;
    }
}

async fn connection(state: ApiState, client: Client, socket: WebSocket) {
    metrics::gauge!("blockstreamer_rpc_ws_connections").increment(1.0);
    let budget_bytes = state.0.opts.rpc.ws_queue_bytes.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        tx,
        budget: Arc::new(Semaphore::new(budget_bytes.min(Semaphore::MAX_PERMITS))),
        budget_bytes,
        cut: state.0.cancel.child_token(),
        reason: Mutex::new(None),
        subs: Mutex::new(HashMap::new()),
        wait: state.0.opts.stream_send_timeout,
    });
    let (sink, stream) = socket.split();
    let shutdown = state.0.cancel.clone();
    tokio::join!(read(stream, state, client, conn.clone()), write(sink, rx, &conn, &shutdown));
    if let Ok(mut subs) = conn.subs.lock() {
        std::mem::take(&mut *subs).into_values().for_each(end);
    }
    metrics::gauge!("blockstreamer_rpc_ws_connections").decrement(1.0);
}

async fn read(mut stream: futures::stream::SplitStream<WebSocket>, state: ApiState, client: Client, conn: Arc<Conn>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let msg = tokio::select! {
            () = conn.closed() => break,
            m = stream.next() => m,
        };
        let body: Bytes = match msg {
            Some(Ok(Message::Text(t))) => t.into(),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                conn.cut_off(format!(
                    "bad message: {e} ([rpc] max_request_bytes is {})",
                    state.0.opts.rpc.max_request_bytes
                ));
                break;
            }
        };
        let permit = tokio::select! {
            () = conn.closed() => break,
            p = in_flight.clone().acquire_owned() => p,
        };
        let (state, client, conn) = (state.clone(), client.clone(), conn.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let answered = super::answer(&state, &client, Some(&conn), &body).await;
            if let Some(text) = answered.body
                && !conn.send(text).await
            {
                return;
            }
            // The subscribe replies are queued: the followers may start sending.
            for r in answered.ready {
                let _ = r.send(());
            }
        });
    }
    // The client left (or is cut off): stop the followers and the writer.
    conn.cut.cancel();
}

async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<(String, OwnedSemaphorePermit)>,
    conn: &Conn,
    shutdown: &CancellationToken,
) {
    loop {
        let (text, permit) = tokio::select! {
            biased;
            () = conn.closed() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let sent = tokio::select! {
            () = conn.closed() => break,
            r = sink.send(Message::Text(text.into())) => r,
        };
        drop(permit);
        if sent.is_err() {
            conn.cut.cancel();
            break;
        }
    }
    let reason = conn.reason.lock().ok().and_then(|mut r| r.take());
    let (code, reason) = match reason {
        _ if shutdown.is_cancelled() => (close_code::AWAY, "server shutting down".to_string()),
        Some(r) => (close_code::POLICY, r),
        None => return,
    };
    tracing::info!(%reason, "websocket client cut off");
    let frame = CloseFrame { code, reason: truncate(&reason, 123).into() };
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
}

/// At most `max` bytes of `s`, cut at a character boundary (a close reason's limit).
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A subscription id as nodes give them: 16 random-looking bytes in hex.
fn new_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let h = alloy_primitives::keccak256([seed.to_be_bytes().as_slice(), &n.to_be_bytes()].concat());
    format!("0x{}", alloy_primitives::hex::encode(&h[..16]))
}

/// `eth_subscribe`: start a follower (it waits for `ready` to fire once the reply is queued).
pub(super) fn subscribe(
    state: &ApiState,
    conn: &Arc<Conn>,
    p: Option<&RawValue>,
    ready: &Mutex<Vec<oneshot::Sender<()>>>,
) -> Result<String, RpcError> {
    let topic = subscribe::topic(p)?;
    let mut subs = conn.subs.lock().map_err(|_| RpcError::new(code::INTERNAL, "subscriptions lock"))?;
    let max = state.0.opts.rpc.max_subscriptions;
    if subs.len() >= max {
        return Err(RpcError::new(
            code::LIMIT,
            format!("{max} subscriptions on this connection ([rpc] max_subscriptions)"),
        ));
    }
    let id = new_id();
    let (tx, rx) = oneshot::channel();
    let label = topic.as_str();
    let task = tokio::spawn(subscribe::follow(state.clone(), conn.clone(), id.clone(), topic, rx));
    subs.insert(id.clone(), (task.abort_handle(), label));
    metrics::gauge!("blockstreamer_rpc_subscriptions", "topic" => label).increment(1.0);
    if let Ok(mut r) = ready.lock() {
        r.push(tx);
    }
    Ok(format!("\"{id}\""))
}

/// Stop one subscription's follower.
fn end((abort, topic): (tokio::task::AbortHandle, &'static str)) {
    abort.abort();
    metrics::gauge!("blockstreamer_rpc_subscriptions", "topic" => topic).decrement(1.0);
}

/// `eth_unsubscribe`: `true` when the id was this connection's.
pub(super) fn unsubscribe(conn: &Conn, p: Option<&RawValue>) -> Result<String, RpcError> {
    let p = params::positional(p)?;
    let id: String = p
        .first()
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .ok_or_else(|| RpcError::invalid_params("eth_unsubscribe needs the subscription id"))?;
    let removed = conn.subs.lock().ok().and_then(|mut s| s.remove(&id));
    Ok(match removed {
        Some(sub) => {
            end(sub);
            "true".into()
        }
        None => "false".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_frame_and_ids_differ() {
        let long = "é".repeat(100);
        let t = truncate(&long, 123);
        assert!(t.len() <= 123 && t.chars().all(|c| c == 'é'));
        let (a, b) = (new_id(), new_id());
        assert!(a != b && a.len() == 34 && a.starts_with("0x"));
    }
}
