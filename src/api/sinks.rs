//! `GET /v1/sinks`: each broker sink's position, its backlog against the stored head, the
//! messages acknowledged and why it is stuck, if it is (from `sink_positions`).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, ApiState};

/// `GET /v1/sinks`.
#[derive(Debug, Serialize)]
pub(super) struct Sinks {
    stored_head: Option<u64>,
    sinks: Vec<SinkView>,
}

/// One sink.
#[derive(Debug, Serialize)]
struct SinkView {
    name: String,
    /// The last block all of whose messages the broker acknowledged (null: none yet).
    position: Option<u64>,
    position_hash: Option<String>,
    /// Stored blocks not published yet.
    backlog_blocks: Option<u64>,
    messages: u64,
    stream_seq: u64,
    updated_ms: i64,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
}

/// `GET /v1/sinks`.
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<Sinks>, ApiError> {
    let stored_head = state.0.store.stored_tip().await?.map(|t| t.number);
    let rows = state.0.store.sinks().await?;
    let sinks = rows
        .into_iter()
        .map(|r| SinkView {
            backlog_blocks: r.position.backlog(stored_head),
            name: r.sink,
            position: r.position.block.map(|(n, _)| n),
            position_hash: r.position.block.map(|(_, h)| alloy_primitives::hex::encode_prefixed(h)),
            messages: r.position.messages,
            stream_seq: r.position.stream_seq,
            updated_ms: r.updated_ms,
            last_error: r.last_error,
            last_error_ms: r.last_error_ms,
        })
        .collect();
    Ok(Json(Sinks { stored_head, sinks }))
}
