//! The fault script: which calls get which fault, as data (TOML on disk, JSON at run time).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// A script that cannot be used.
#[derive(Debug, Error)]
pub enum ScriptError {
    #[error("cannot read fault script {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("fault script {path}: {message}")]
    Parse { path: String, message: String },
    #[error("fault script rule {rule}: {message}")]
    Invalid { rule: String, message: String },
}

/// Rules checked in order; the first rule that matches a call and wins its probability roll
/// applies to it. Calls no rule takes are forwarded untouched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Script {
    /// Seed of the probability rolls, so a run can be replayed.
    pub seed: u64,
    pub rules: Vec<Rule>,
}

/// One rule: a filter and the fault it injects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in the request log (defaults to `rule-N`).
    #[serde(default)]
    pub name: String,
    /// JSON-RPC methods this rule applies to; empty means every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Only calls for a block height in `[from_height, to_height]` (calls without a height, such
    /// as `eth_blockNumber` or the `latest` tag, never match a height filter).
    #[serde(default)]
    pub from_height: Option<u64>,
    #[serde(default)]
    pub to_height: Option<u64>,
    /// Chance a matching call gets the fault (default 1).
    #[serde(default = "one")]
    pub probability: f64,
    /// Apply at most this many times.
    #[serde(default)]
    pub count: Option<u64>,
    /// Active only in this window, in milliseconds since the script was loaded.
    #[serde(default)]
    pub after_ms: Option<u64>,
    #[serde(default)]
    pub until_ms: Option<u64>,
    pub fault: Fault,
}

fn one() -> f64 {
    1.0
}

/// What a fault does. Transport faults replace the whole HTTP response (for a batch, the first
/// element that draws one decides); head faults rewrite what the upstream is asked; payload
/// faults change one call's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer with this status, headers and body (429 + `Retry-After`, 5xx, 401/402/403…).
    Http {
        status: u16,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        body: Option<String>,
    },
    /// A JSON-RPC error object for the call, HTTP 200.
    RpcError {
        code: i32,
        message: String,
        #[serde(default)]
        data: Option<Value>,
    },
    /// Wait, then answer normally.
    Delay { ms: u64 },
    /// Send the status line and headers at once, then the body `chunk` bytes every `interval_ms`.
    SlowBody {
        #[serde(default = "one_usize")]
        chunk: usize,
        interval_ms: u64,
    },
    /// Declare the full length, send `fraction` of the body, close.
    Truncate {
        #[serde(default = "half")]
        fraction: f64,
    },
    /// Reset the connection (RST) after `after_bytes` bytes of the response (0: before any).
    Reset {
        #[serde(default)]
        after_bytes: usize,
    },
    /// Read the request and never answer.
    Hang,
    /// HTTP 200 with bytes that are not JSON.
    Garbage,
    /// HTTP 200 with an HTML error page, as a CDN in front of a node sends.
    Html,
    /// HTTP 200 with an empty body.
    Empty,
    /// The real answer followed by junk bytes.
    TrailingGarbage,
    /// The real answer under another id.
    WrongId,
    /// `"result": null`.
    NullResult,
    /// Replace the result with `value` (a wrong chain id, a string instead of a block…).
    Result { value: Value },
    /// Report and serve the chain `blocks` behind the upstream head.
    HeadLag { blocks: u64 },
    /// Report and serve the head as it was when this rule first applied.
    FreezeHead,
    /// Every other call reports and serves the head `blocks` lower.
    HeadBackwards { blocks: u64 },
    /// Ask the upstream for height `n + offset` instead of `n`.
    WrongHeight { offset: i64 },
    /// Replace the block's `hash` with a made-up one.
    ForgedHash,
    /// Set one field of the result to `value`: a top-level key (`stateRoot`) or a JSON pointer
    /// (`/transactions/0/blockHash`). `value = null` is how to send a field as missing-ish.
    Mutate { field: String, value: Value },
    /// Delete one field of the result (key or JSON pointer).
    Remove { field: String },
    /// Pad the answer to at least `bytes` bytes (a valid JSON body).
    Oversize { bytes: usize },
    /// HTTP 200 with a chunked body that never ends.
    Endless,
    /// Answer a batch with every answer twice (same id): a duplicated delivery.
    Duplicate,
    /// The real answer with its id as a string (`"7"` instead of `7`).
    IdAsString,
    /// Set (or with no `value`, delete) a key of the JSON-RPC envelope: `id`, `jsonrpc`,
    /// `result`, `error`.
    Envelope {
        field: String,
        #[serde(default)]
        value: Option<Value>,
    },
    /// The real answer behind a UTF-8 byte-order mark.
    Bom,
    /// The real answer with an invalid UTF-8 byte inside a string.
    InvalidUtf8,
    /// The result object starts with an extra `field: value`, so the key appears twice.
    DuplicateKey { field: String, value: Value },
    /// The result object carries arrays nested `depth` deep (serde_json stops at 128).
    DeepNesting { depth: usize },
    /// `eth_getLogs` over more than `blocks` blocks is refused with this error; `{range}` in
    /// the message becomes a range that would work (`[0x10, 0x4f]`), as Alchemy and Infura say.
    MaxRange { blocks: u64, code: i32, message: String },
}

fn one_usize() -> usize {
    1
}

fn half() -> f64 {
    0.5
}

impl Fault {
    /// Short name for logs and telemetry assertions.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::RpcError { .. } => "rpc_error",
            Self::Delay { .. } => "delay",
            Self::SlowBody { .. } => "slow_body",
            Self::Truncate { .. } => "truncate",
            Self::Reset { .. } => "reset",
            Self::Hang => "hang",
            Self::Garbage => "garbage",
            Self::Html => "html",
            Self::Empty => "empty",
            Self::TrailingGarbage => "trailing_garbage",
            Self::WrongId => "wrong_id",
            Self::NullResult => "null_result",
            Self::Result { .. } => "result",
            Self::Remove { .. } => "remove",
            Self::HeadLag { .. } => "head_lag",
            Self::FreezeHead => "freeze_head",
            Self::HeadBackwards { .. } => "head_backwards",
            Self::WrongHeight { .. } => "wrong_height",
            Self::ForgedHash => "forged_hash",
            Self::Mutate { .. } => "mutate",
            Self::Oversize { .. } => "oversize",
            Self::Endless => "endless",
            Self::Duplicate => "duplicate",
            Self::IdAsString => "id_as_string",
            Self::Envelope { .. } => "envelope",
            Self::Bom => "bom",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::DeepNesting { .. } => "deep_nesting",
            Self::MaxRange { .. } => "max_range",
        }
    }

    /// Faults that replace the whole HTTP exchange rather than one call's answer.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::Http { .. }
                | Self::SlowBody { .. }
                | Self::Truncate { .. }
                | Self::Reset { .. }
                | Self::Hang
                | Self::Garbage
                | Self::Html
                | Self::Empty
                | Self::TrailingGarbage
                | Self::Oversize { .. }
                | Self::Endless
        )
    }
}

impl Script {
    /// Parse TOML (`path` only for messages) and check it.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ScriptError> {
        let s: Self =
            toml::from_str(text).map_err(|e| ScriptError::Parse { path: path.into(), message: e.to_string() })?;
        s.validated()
    }

    /// Parse JSON (the run-time switch endpoint) and check it.
    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        let s: Self = serde_json::from_str(text)
            .map_err(|e| ScriptError::Parse { path: "<json>".into(), message: e.to_string() })?;
        s.validated()
    }

    /// Read a TOML or JSON file (by extension).
    pub fn load(path: &std::path::Path) -> Result<Self, ScriptError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read { path: p.clone(), source })?;
        if path.extension().is_some_and(|e| e == "json") { Self::from_json(&text) } else { Self::from_toml(&text, &p) }
    }

    /// A one-rule script.
    pub fn single(rule: Rule) -> Self {
        Self { seed: 0, rules: vec![rule] }
    }

    /// Name unnamed rules (`rule-N`) and check every rule, as the parsers here do; for scripts
    /// deserialized as part of something else.
    pub fn validated(mut self) -> Result<Self, ScriptError> {
        for (i, r) in self.rules.iter_mut().enumerate() {
            if r.name.is_empty() {
                r.name = format!("rule-{}", i + 1);
            }
            let bad = |message: &str| Err(ScriptError::Invalid { rule: r.name.clone(), message: message.into() });
            if !(0.0..=1.0).contains(&r.probability) {
                return bad("probability must be within 0..=1");
            }
            if let (Some(a), Some(b)) = (r.from_height, r.to_height)
                && a > b
            {
                return bad("from_height is above to_height");
            }
            if let (Some(a), Some(b)) = (r.after_ms, r.until_ms)
                && a >= b
            {
                return bad("after_ms must be below until_ms");
            }
            match &r.fault {
                Fault::Http { status, .. } if !(100..=599).contains(status) => return bad("status must be 100-599"),
                Fault::Truncate { fraction } if !(0.0..1.0).contains(fraction) => {
                    return bad("truncate fraction must be within 0..1");
                }
                Fault::SlowBody { chunk: 0, .. } => return bad("slow_body chunk must be at least 1"),
                Fault::MaxRange { blocks: 0, .. } => return bad("max_range blocks must be at least 1"),
                _ => {}
            }
        }
        Ok(self)
    }
}

impl Rule {
    /// A rule with no filter (every call, always) injecting `fault`.
    pub fn always(name: &str, fault: Fault) -> Self {
        Self {
            name: name.into(),
            methods: Vec::new(),
            from_height: None,
            to_height: None,
            probability: 1.0,
            count: None,
            after_ms: None,
            until_ms: None,
            fault,
        }
    }

    /// Only these methods.
    pub fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| (*m).to_string()).collect();
        self
    }

    /// Only with this chance.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// At most `n` times.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// Only heights in `from..=to`.
    pub fn heights(mut self, from: u64, to: u64) -> Self {
        self.from_height = Some(from);
        self.to_height = Some(to);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_script_parses_and_names_rules() {
        let s = Script::from_toml(
            r#"
seed = 7
[[rules]]
methods = ["eth_getBlockByNumber"]
probability = 0.3
fault = { kind = "http", status = 429, headers = { "Retry-After" = "3" } }
[[rules]]
name = "liar"
from_height = 10
to_height = 20
fault = { kind = "mutate", field = "stateRoot", value = "0x00" }
"#,
            "t.toml",
        )
        .expect("valid script");
        assert_eq!(s.seed, 7);
        assert_eq!(s.rules[0].name, "rule-1");
        assert_eq!(s.rules[1].fault.kind(), "mutate");
        assert!(s.rules[0].fault.is_transport());
    }

    #[test]
    fn bad_scripts_say_what_is_wrong() {
        let e = Script::from_toml("[[rules]]\nprobability = 2.0\nfault = { kind = \"hang\" }\n", "t").unwrap_err();
        assert!(e.to_string().contains("probability"), "{e}");
        let e = Script::from_toml("[[rules]]\nfault = { kind = \"explode\" }\n", "t").unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
    }
}
