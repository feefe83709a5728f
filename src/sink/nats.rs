//! The NATS JetStream transport: connect (token, user/password or a creds file), check or
//! create the stream, publish a batch in order with `Nats-Msg-Id` and wait for every ack.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};

use super::outbox::Outgoing;
use super::{SinkError, Transport};
use crate::config::{NatsSecrets, NatsSinkConfig};
use crate::store::SinkPosition;

/// A JetStream destination.
pub struct Nats {
    js: jetstream::Context,
    stream: String,
    /// `prefix.chain_id`, the start of every subject.
    root: String,
    config: NatsSinkConfig,
    max_in_flight: usize,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").field("stream", &self.stream).field("root", &self.root).finish_non_exhaustive()
    }
}

fn broker(e: impl std::fmt::Display) -> SinkError {
    SinkError::Broker(e.to_string())
}

impl Nats {
    /// Connect (the client keeps reconnecting in the background) to `config.url` with the
    /// expanded secrets.
    pub async fn connect(config: &NatsSinkConfig, secrets: NatsSecrets, chain_id: u64) -> Result<Self, SinkError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("blockstreamer")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)));
        if let Some(t) = secrets.token {
            opts = opts.token(t);
        }
        if let (Some(u), Some(p)) = (secrets.user, secrets.password) {
            opts = opts.user_and_password(u, p);
        }
        if let Some(f) = &config.credentials_file {
            opts =
                opts.credentials_file(f).await.map_err(|e| SinkError::Config(format!("credentials_file {f}: {e}")))?;
        }
        let urls: Vec<&str> = config.url.split(',').map(str::trim).collect();
        let client = opts.connect(urls).await.map_err(broker)?;
        Ok(Self {
            js: jetstream::new(client),
            stream: config.stream.clone(),
            root: format!("{}.{chain_id}", config.subject_prefix),
            config: config.clone(),
            max_in_flight: config.max_in_flight.max(1),
        })
    }
}

impl Transport for Nats {
    async fn prepare(&mut self, at: &SinkPosition) -> Result<(), SinkError> {
        let mut s = match self.js.get_stream(&self.stream).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                if at.messages > 0 {
                    return Err(lost(&self.stream, at, "it does not exist"));
                }
                let config = stream::Config {
                    name: self.stream.clone(),
                    subjects: vec![format!("{}.>", self.root)],
                    duplicate_window: Duration::from_secs(self.config.duplicate_window_secs),
                    max_age: Duration::from_secs(self.config.max_age_secs),
                    max_bytes: self.config.max_bytes.unwrap_or(-1),
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                self.js.create_stream(config).await.map_err(|e| match e.kind() {
                    // Another stream already captures these subjects: waiting will not help.
                    jetstream::context::CreateStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP =>
                    {
                        SinkError::Config(format!(
                            "cannot create stream {:?}: another stream already captures subjects {}.> \
                             (use that stream as [sink.nats] stream, or another subject_prefix)",
                            self.stream, self.root
                        ))
                    }
                    _ => broker(e),
                })?
            }
            Err(e) => return Err(broker(e)),
        };
        let info = s.info().await.map_err(broker)?;
        // A stream that holds less than what it acknowledged to us lost data (a wiped server).
        if info.state.last_sequence < at.stream_seq {
            return Err(lost(&self.stream, at, &format!("its last sequence is {}", info.state.last_sequence)));
        }
        Ok(())
    }

    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, SinkError> {
        let mut last = 0;
        for chunk in batch.chunks(self.max_in_flight) {
            let mut acks = Vec::with_capacity(chunk.len());
            for m in chunk {
                let p = PublishMessage::build().payload(m.payload.clone().into()).message_id(m.id.as_str());
                acks.push(self.js.send_publish(format!("{}.{}", self.root, m.subject), p).await.map_err(broker)?);
            }
            for a in acks {
                let ack = a.await.map_err(broker)?;
                if ack.stream != self.stream {
                    return Err(SinkError::Config(format!(
                        "subject {}.> is captured by stream {:?}, not {:?}",
                        self.root, ack.stream, self.stream
                    )));
                }
                last = ack.sequence;
            }
        }
        Ok(last)
    }
}

fn lost(stream: &str, at: &SinkPosition, why: &str) -> SinkError {
    let upto = at.block.map_or(0, |(n, _)| n);
    SinkError::StreamLost(format!(
        "stream {stream:?} no longer holds what it acknowledged ({why}; {} messages up to block {upto} were published). \
         Nothing more is published until an operator decides. To recreate the stream and replay every stored block: \
         `blockstreamer sink-reset nats --db FILE`; to replay from height N only (consumers that hold up to {upto} need \
         N = {}): `blockstreamer sink-reset nats --db FILE --from-block N`; then start again",
        at.messages,
        upto + 1
    ))
}
