//! Broker sinks: publish the canonical chain from the SQLite file (the outbox) to a broker,
//! exactly once. The position is a row in the same file, advanced only after the broker
//! acknowledged; every message carries an id the broker deduplicates, so what a crash makes the
//! sink publish again is dropped. Ingest never waits for a sink: the sink reads what is
//! committed, and its backlog is the distance to the stored head.

pub mod nats;
pub mod outbox;

use std::time::Duration;

use alloy_primitives::B256;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::store::{SinkPosition, Store, StoreError};
use outbox::{Outbox, Outgoing, Step};

/// Why a sink step failed.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The broker is down, slow or refused a publish: retried with backoff.
    #[error("broker: {0}")]
    Broker(String),
    /// The stream lost what it acknowledged: the sink stops until an operator decides.
    #[error("{0}")]
    StreamLost(String),
    /// `publish = "final"` and a published block left the canonical chain.
    #[error("block {number} {hash} was published as final and a reorg replaced it: raise [sink.nats] confirmations")]
    FinalUndone { number: u64, hash: B256 },
    #[error("sink configuration: {0}")]
    Config(String),
    #[error("stored data: {0}")]
    Data(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SinkError {
    /// Retried (the broker may come back) rather than fatal.
    fn is_transient(&self) -> bool {
        matches!(self, Self::Broker(_) | Self::Store(_))
    }
}

/// A broker a sink publishes to.
pub trait Transport: Send {
    /// Check the destination (create it when nothing was published yet); an error when it no
    /// longer holds what it acknowledged.
    fn prepare(&mut self, at: &SinkPosition) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Publish `batch` in order and wait for every acknowledgement; the broker's sequence of
    /// the last one.
    fn publish(&mut self, batch: &[Outgoing]) -> impl Future<Output = Result<u64, SinkError>> + Send;
}

/// Run the sink `name` until `cancel`: read steps from `outbox`, publish them through `t`,
/// advance the position. Transient failures back off (to 10 s) and retry from the position.
pub async fn run<T: Transport>(
    name: &str,
    outbox: Outbox,
    mut t: T,
    cancel: CancellationToken,
) -> Result<(), SinkError> {
    let store = outbox.store.clone();
    let mut changes = store.subscribe_changes();
    let mut backoff = Duration::from_millis(100);
    // The position as last read or written; re-read (and the broker checked) after a failure.
    let mut at: Option<SinkPosition> = None;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        match step(name, &outbox, &mut t, &mut at).await {
            Ok(true) => backoff = Duration::from_millis(100),
            Ok(false) => {
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    _ = changes.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => {
                metrics::counter!("blockstreamer_sink_errors_total", "sink" => name.to_string()).increment(1);
                let _ = store.set_sink_error(name, &e.to_string()).await;
                if matches!(e, SinkError::StreamLost(_)) {
                    tracing::error!(sink = name, error = %e, "sink stopped until its position is reset");
                    if !wait_for_reset(name, &store, &cancel).await? {
                        return Ok(());
                    }
                    tracing::info!(sink = name, "sink position reset; publishing again");
                    at = None;
                    continue;
                }
                if !e.is_transient() {
                    tracing::error!(sink = name, error = %e, "sink stopped");
                    return Err(e);
                }
                tracing::warn!(sink = name, error = %e, retry_ms = backoff.as_millis(), "sink publish failed; retrying");
                at = None;
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// After a lost stream: wait until an operator resets the position (`sink-reset`, from
/// another process); false when cancelled first.
async fn wait_for_reset(name: &str, store: &Store, cancel: &CancellationToken) -> Result<bool, SinkError> {
    let stuck = store.sink_position(name).await?;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(false),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if store.sink_position(name).await? != stuck {
            return Ok(true);
        }
    }
}

/// One step; `Ok(false)`: nothing to publish.
async fn step<T: Transport>(
    name: &str,
    outbox: &Outbox,
    t: &mut T,
    position: &mut Option<SinkPosition>,
) -> Result<bool, SinkError> {
    let store = &outbox.store;
    let at = match *position {
        Some(p) => p,
        None => {
            let p = store.sink_position(name).await?;
            t.prepare(&p).await?;
            *position = Some(p);
            p
        }
    };
    let Some(tip) = store.stored_tip().await? else { return Ok(false) };
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("blockstreamer_sink_backlog_blocks", "sink" => name.to_string())
        .set(at.backlog(Some(tip.number)).unwrap_or(0) as f64);
    let Step::Batch { messages, to, blocks, undone, committed_ms } =
        outbox.next(cursor(store, &at).await?, (tip.number, tip.hash.into())).await?
    else {
        return Ok(false);
    };
    // What the broker may hold beyond the position after a crash: the end of the batch in
    // flight, or of an earlier one that reaches further (it stays until the position passes
    // it or a reorg message covers it).
    let claim = match at.pending {
        Some(p) if blocks > 0 && at.block.is_none_or(|(b, _)| p.0 > b) => {
            // Read past the cursor check: if that branch left the chain meanwhile, this batch
            // may be on the new one, on top of blocks the broker holds. The next step tells
            // the reorg instead.
            if store.canonical_hash_at(p.0).await?.map(B256::from) != Some(p.1) {
                return Ok(true);
            }
            Some(if p.0 >= to.0 { p } else { to })
        }
        _ if blocks > 0 => Some(to),
        _ => None,
    };
    // Forward batches are marked in flight first: if this process dies after the broker got
    // them and the chain then reorganises, the undo still covers them.
    if let Some(c) = claim
        && at.pending != Some(c)
    {
        store.set_sink_pending(name, c).await?;
    }
    let seq = t.publish(&messages).await?;
    // From each block's commit to the broker's acknowledgement of its last message.
    let acked_ms = crate::types::now_ms();
    for (number, at) in committed_ms {
        let ms = acked_ms.saturating_sub(at).max(0);
        #[allow(clippy::cast_precision_loss)]
        metrics::histogram!("blockstreamer_sink_commit_to_ack_seconds", "sink" => name.to_string())
            .record(ms as f64 / 1000.0);
        tracing::debug!(sink = name, number, commit_to_ack_ms = ms, "acknowledged");
    }
    let n = u64::try_from(messages.len()).unwrap_or(u64::MAX);
    let pending = claim.filter(|c| c.0 > to.0);
    let next = SinkPosition { block: Some(to), messages: at.messages + n, stream_seq: seq.max(at.stream_seq), pending };
    store.set_sink_position(name, next, &undone).await?;
    *position = Some(next);
    metrics::counter!("blockstreamer_sink_messages_total", "sink" => name.to_string()).increment(n);
    metrics::counter!("blockstreamer_sink_blocks_total", "sink" => name.to_string()).increment(blocks);
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("blockstreamer_sink_position", "sink" => name.to_string()).set(to.0 as f64);
    Ok(true)
}

/// Where the outbox walks from: the acknowledged position, unless a batch was in flight when
/// the sink stopped and its last block left the canonical chain since. Then the broker may
/// hold blocks past the position that are now dropped, so the walk starts at that block (the
/// outbox tells the reorg from there; consumers undo by hash, so undoing a block they never
/// got is harmless).
async fn cursor(store: &Store, at: &SinkPosition) -> Result<Option<(u64, B256)>, SinkError> {
    if let Some((n, h)) = at.pending
        && at.block.is_none_or(|(b, _)| n > b)
        && store.canonical_hash_at(n).await?.map(B256::from) != Some(h)
    {
        return Ok(Some((n, h)));
    }
    Ok(at.block)
}

/// Start the NATS sink of `config` over `store` on the current runtime.
pub async fn start_nats(
    store: Store,
    chain_id: u64,
    config: &crate::config::NatsSinkConfig,
    secrets: crate::config::NatsSecrets,
    index: std::sync::Arc<crate::index::Indexing>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), SinkError>>, SinkError> {
    let t = nats::Nats::connect(config, secrets, chain_id).await?;
    let outbox = Outbox {
        store,
        sink: "nats".into(),
        chain_id,
        kinds: config.kinds.clone(),
        publish: config.publish,
        confirmations: config.confirmations,
        index,
    };
    Ok(tokio::spawn(async move { run("nats", outbox, t, cancel).await }))
}
