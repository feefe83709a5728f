//! `blockstreamer consume`, the reference consumer of a sink's stream: read a JetStream stream
//! in order and print each message, or apply the blocks and undos into another blockstreamer
//! SQLite file, resuming after the last message it applied.

pub mod apply;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::index::Indexing;
use crate::store::{Store, StoreError, StoreOptions};
pub use apply::{Applied, Applier};

/// Why consuming stopped.
#[derive(Debug, Error)]
pub enum ConsumeError {
    #[error("broker: {0}")]
    Broker(String),
    #[error("stream {stream:?}: {why}")]
    Stream { stream: String, why: String },
    /// A message that cannot be applied; nothing of it was written.
    #[error("message {seq}: {why}")]
    Message { seq: u64, why: String },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Range(#[from] crate::types::OutOfRange),
}

fn broker(e: impl std::fmt::Display) -> ConsumeError {
    ConsumeError::Broker(e.to_string())
}

/// What to read and where to put it.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    pub stream: String,
    pub token: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// Apply into this file (created when missing); `None`: print each message as a JSON line.
    pub db: Option<PathBuf>,
    /// When printing: only subjects matching this filter (e.g. `blockstreamer.1.logs.>`).
    pub subject: Option<String>,
    /// When printing: start at this stream sequence (default: the first message).
    pub from_seq: Option<u64>,
    /// Decoded event tables to fill (the `[index]` of a config), when applying.
    pub index: Indexing,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumeReport {
    pub applied: Applied,
    /// The stream sequence of the last message read.
    pub last_seq: u64,
}

#[derive(Serialize)]
struct Printed<'a> {
    seq: u64,
    subject: &'a str,
    id: Option<&'a str>,
    message: &'a RawValue,
}

/// Read `opts.stream` until `cancel`, printing to `out` or applying into `opts.db`.
pub async fn consume(
    opts: &ConsumeOptions,
    cancel: &CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<ConsumeReport, ConsumeError> {
    let js = connect(opts).await?;
    let Some(stream) = wait_for_stream(&js, &opts.stream, cancel).await? else {
        return Ok(ConsumeReport::default());
    };
    let Some(db) = &opts.db else {
        return print(opts, stream, cancel, out).await;
    };
    let store = Store::open(&StoreOptions::new(db)).await?;
    let res = apply_into(opts, &store, stream, cancel).await;
    store.close().await;
    res
}

/// The stream, waiting (and saying so once) while it does not exist yet: a consumer may start
/// before the sink first publishes. `None` when cancelled first.
async fn wait_for_stream(
    js: &jetstream::Context,
    name: &str,
    cancel: &CancellationToken,
) -> Result<Option<jetstream::stream::Stream>, ConsumeError> {
    let mut told = false;
    loop {
        match js.get_stream(name).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {
                if !told {
                    tracing::info!(stream = name, "no such stream yet; waiting for the sink to create it");
                    told = true;
                }
            }
            Err(e) => return Err(ConsumeError::Stream { stream: name.to_string(), why: e.to_string() }),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn connect(opts: &ConsumeOptions) -> Result<jetstream::Context, ConsumeError> {
    let mut c = async_nats::ConnectOptions::new().name("blockstreamer-consume").retry_on_initial_connect();
    if let Some(t) = &opts.token {
        c = c.token(t.clone());
    }
    if let Some(f) = &opts.credentials_file {
        c = c.credentials_file(f).await.map_err(|e| broker(format!("credentials file {}: {e}", f.display())))?;
    }
    let urls: Vec<&str> = opts.url.split(',').map(str::trim).collect();
    let client = tokio::time::timeout(Duration::from_secs(15), c.connect(urls))
        .await
        .map_err(|_| broker(format!("no NATS server answered at {} within 15 s", opts.url)))?
        .map_err(broker)?;
    Ok(jetstream::new(client))
}

fn from(seq: u64) -> consumer::DeliverPolicy {
    if seq <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence { start_sequence: seq }
    }
}

async fn ordered(
    stream: &jetstream::stream::Stream,
    start: u64,
    subject: Option<&str>,
) -> Result<consumer::pull::Ordered, ConsumeError> {
    let c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: from(start),
            filter_subject: subject.unwrap_or_default().to_string(),
            ..Default::default()
        })
        .await
        .map_err(broker)?;
    c.messages().await.map_err(broker)
}

async fn print(
    opts: &ConsumeOptions,
    stream: jetstream::stream::Stream,
    cancel: &CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<ConsumeReport, ConsumeError> {
    let mut msgs = ordered(&stream, opts.from_seq.unwrap_or(1), opts.subject.as_deref()).await?;
    let mut report = ConsumeReport::default();
    loop {
        let m = tokio::select! {
            () = cancel.cancelled() => return Ok(report),
            m = msgs.next() => m,
        };
        let Some(m) = m else { return Ok(report) };
        let m = m.map_err(broker)?;
        let seq = m.info().map_err(broker)?.stream_sequence;
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(async_nats::HeaderValue::as_str);
        let text = std::str::from_utf8(&m.payload).map_err(|e| ConsumeError::Message { seq, why: e.to_string() })?;
        let message: &RawValue =
            serde_json::from_str(text).map_err(|e| ConsumeError::Message { seq, why: e.to_string() })?;
        serde_json::to_writer(&mut *out, &Printed { seq, subject: m.subject.as_str(), id, message })
            .map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        report.last_seq = seq;
        report.applied.messages += 1;
    }
}

async fn apply_into(
    opts: &ConsumeOptions,
    store: &Store,
    stream: jetstream::stream::Stream,
    cancel: &CancellationToken,
) -> Result<ConsumeReport, ConsumeError> {
    let redacted = crate::provider::SecretUrl::new(opts.url.clone()).redacted();
    store.register_providers(&[(apply::STREAM_PROVIDER, format!("nats:{}", opts.stream), redacted)]).await?;
    store.use_indexing(&opts.index).await?;
    let mut applier = Applier::new(store.clone(), &opts.stream, opts.index.clone()).await?;
    check_continuity(&stream, &opts.stream, applier.position().stream_seq).await?;
    let mut msgs = ordered(&stream, applier.position().stream_seq + 1, None).await?;
    let mut report = ConsumeReport { last_seq: applier.position().stream_seq, ..ConsumeReport::default() };
    let res = loop {
        // A quiet stream commits what it holds within 20 ms.
        let m = tokio::select! {
            () = cancel.cancelled() => break Ok(()),
            m = tokio::time::timeout(Duration::from_millis(20), msgs.next()) => m,
        };
        let m = match m {
            Err(_) => match applier.flush().await {
                Ok(()) => continue,
                Err(e) => break Err(e),
            },
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(broker(e)),
            Ok(Some(Ok(m))) => m,
        };
        let seq = match m.info() {
            Ok(i) => i.stream_sequence,
            Err(e) => break Err(broker(e)),
        };
        if let Err(e) = applier.apply(seq, &m.payload).await {
            break Err(e);
        }
        report.last_seq = seq;
    };
    // What was applied before a failure or Ctrl-C is kept.
    let flushed = applier.flush().await;
    report.applied = applier.applied;
    res.and(flushed).map(|()| report)
}

/// The stream still holds what this file applied, and nothing it needs has expired.
async fn check_continuity(stream: &jetstream::stream::Stream, name: &str, applied: u64) -> Result<(), ConsumeError> {
    let info = stream.get_info().await.map_err(broker)?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let err = |why: String| ConsumeError::Stream { stream: name.to_string(), why };
    if last < applied {
        return Err(err(format!(
            "this file applied up to sequence {applied} but the stream ends at {last}: it was recreated; \
             start from a new file, or keep this one and consume the sink's replay into a new file"
        )));
    }
    if applied > 0 && first > applied + 1 {
        return Err(err(format!(
            "messages {}..{} expired from the stream before this file applied them (raise max_age_secs / max_bytes)",
            applied + 1,
            first - 1
        )));
    }
    Ok(())
}
