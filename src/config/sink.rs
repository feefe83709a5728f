//! The `[sink]` table: publishing the canonical chain to a broker (`[sink.nats]`: NATS
//! JetStream), from the SQLite file as the outbox.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[sink]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `[sink.nats]`; absent: no sink.
    pub nats: Option<NatsSinkConfig>,
}

/// When a block is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishWhen {
    /// As soon as it is committed; a reorg is told by a `reorg` message before the new blocks.
    #[default]
    Canonical,
    /// Once it is `confirmations` deep; never undone (a reorg deeper than that is an error the
    /// sink stops on).
    Final,
}

impl PublishWhen {
    /// The configured word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canonical => "canonical",
            Self::Final => "final",
        }
    }
}

/// What is published besides blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Blocks,
    Txs,
    Logs,
    /// Logs decoded by the `[[index.contracts]]` events, one subject per table.
    Events,
}

impl SinkKind {
    /// The word in subjects and message ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::Txs => "txs",
            Self::Logs => "logs",
            Self::Events => "events",
        }
    }
}

/// `[sink.nats]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    /// `nats://host:port` (several, comma-separated, for a cluster).
    pub url: String,
    /// A token (`${VAR}` is expanded from the environment).
    pub token: Option<String>,
    /// User and password (`${VAR}` expanded).
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<String>,
    /// The JetStream stream; created when missing (subjects `subject_prefix.<chain id>.>`).
    pub stream: String,
    pub subject_prefix: String,
    /// What to publish: `blocks` always goes (the reorg messages refer to it), `txs`, `logs`
    /// and `events` (decoded by `[[index.contracts]]`) on request.
    pub kinds: Vec<SinkKind>,
    /// When: `canonical` (with reorg undo messages) or `final` (never undone).
    pub publish: PublishWhen,
    /// Depth a block must reach before `publish = "final"` publishes it.
    pub confirmations: u64,
    /// The stream's duplicate window: a publish repeated within it (after a crash) is dropped
    /// by the server by its `Nats-Msg-Id`.
    pub duplicate_window_secs: u64,
    /// Stream retention when it is created: oldest messages go past this age (0: kept) or size.
    pub max_age_secs: u64,
    pub max_bytes: Option<i64>,
    /// Publishes awaiting their acknowledgement at once.
    pub max_in_flight: usize,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            token: None,
            user: None,
            password: None,
            credentials_file: None,
            stream: "blockstreamer".into(),
            subject_prefix: "blockstreamer".into(),
            kinds: vec![SinkKind::Blocks, SinkKind::Txs, SinkKind::Logs],
            publish: PublishWhen::Canonical,
            confirmations: 12,
            duplicate_window_secs: 600,
            max_age_secs: 0,
            max_bytes: None,
            max_in_flight: 512,
        }
    }
}

/// `[sink.nats]`'s secrets, expanded.
#[derive(Clone, Default)]
pub struct NatsSecrets {
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for NatsSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSecrets").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A subject token: letters, digits, `-` and `_` (no `.`, `*`, `>` or spaces).
fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl NatsSinkConfig {
    /// Names usable as a stream and subjects, a positive window and in-flight count.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.url.split(',').all(|u| u.trim().starts_with("nats://") || u.trim().starts_with("tls://")) {
            return Err(invalid("sink.nats.url", "must be nats://host:port (or tls://), comma-separated for several"));
        }
        if !token_ok(&self.stream) {
            return Err(invalid("sink.nats.stream", "letters, digits, '-' and '_'"));
        }
        if !self.subject_prefix.split('.').all(token_ok) {
            return Err(invalid("sink.nats.subject_prefix", "dot-separated tokens of letters, digits, '-' and '_'"));
        }
        if self.duplicate_window_secs == 0 || self.max_in_flight == 0 {
            return Err(invalid("sink.nats.duplicate_window_secs/max_in_flight", "must be positive"));
        }
        if self.publish == PublishWhen::Final && self.confirmations == 0 {
            return Err(invalid("sink.nats.confirmations", "must be at least 1 with publish = \"final\""));
        }
        Ok(())
    }

    /// The secrets with `${VAR}` expanded.
    pub fn secrets(&self, env: &impl Fn(&str) -> Option<String>) -> Result<NatsSecrets, ConfigError> {
        let x = |v: &Option<String>, f: &str| v.as_ref().map(|s| super::check::interpolate(s, f, env)).transpose();
        Ok(NatsSecrets {
            token: x(&self.token, "sink.nats.token")?,
            user: x(&self.user, "sink.nats.user")?,
            password: x(&self.password, "sink.nats.password")?,
        })
    }
}
