//! Why a provider call failed, classified into the outcome stored in telemetry, and the wait a
//! provider asked for (`Retry-After`, or a hint in the error text).

use std::time::Duration;

use thiserror::Error;

use super::wire::Reject;
use crate::model::Outcome;

/// Why a call failed, already classified.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProviderError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP {status}")]
    Http { status: u16, retry_after: Option<Duration> },
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i32, message: String, retry_after: Option<Duration> },
    #[error("invalid response: {0}")]
    Invalid(String),
    #[error("response larger than {0} bytes")]
    TooLarge(u32),
    #[error("null result")]
    Null,
    #[error("rejected block: {0}")]
    Rejected(#[from] Reject),
}

impl ProviderError {
    /// The outcome class stored in telemetry.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Timeout(_) => Outcome::Timeout,
            Self::Connect(_) => Outcome::Connect,
            Self::Http { status: 429, .. } => Outcome::RateLimited,
            Self::Http { status, .. } if *status >= 500 => Outcome::Http5xx,
            Self::Http { .. } => Outcome::Http4xx,
            Self::Rpc { code, message, .. } if is_rate_limit(*code, message) && !says_range(message) => {
                Outcome::RateLimited
            }
            Self::Rpc { .. } => Outcome::RpcError,
            Self::Invalid(_) | Self::Rejected(_) => Outcome::InvalidResponse,
            Self::TooLarge(_) => Outcome::TooLarge,
            Self::Null => Outcome::NullResult,
        }
    }

    /// How long the provider asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } | Self::Rpc { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(super) fn rpc_code(&self) -> Option<i32> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Whether an error message refuses an `eth_getLogs` range or result size (not a throttle,
/// though some providers share its code -32005 and the word "exceeded").
pub(super) fn says_range(message: &str) -> bool {
    const SAYS: [&str; 14] = [
        "block range",
        "range too",
        "range is too",
        "range exceeds",
        "response size",
        "returned more than",
        "more than 10000 results",
        "too many blocks",
        "blocks per request",
        "limited to a",
        "too wide",
        "log response",
        "results limit",
        "max results",
    ];
    let m = message.to_ascii_lowercase();
    SAYS.iter().any(|k| m.contains(k))
}

/// JSON-RPC codes and messages providers use for throttling (alloy's list plus common text).
fn is_rate_limit(code: i32, message: &str) -> bool {
    matches!(code, 429 | -32005 | -32007 | -32016 | -32012 | 1008 | -32090) || {
        let m = message.to_ascii_lowercase();
        m.contains("rate limit")
            || m.contains("too many requests")
            || m.contains("exceeded")
            || m.contains("limit reached")
            || retry_hint(&m).is_some()
    }
}

/// A wait hint inside an error message, as providers write it: "try again in 400ms", "retry in
/// 2s", "try again in 1.5 seconds".
pub fn retry_hint(message: &str) -> Option<Duration> {
    let m = message.to_ascii_lowercase();
    let at = ["try again in ", "retry in ", "retry after "].iter().find_map(|k| m.find(k).map(|i| i + k.len()))?;
    let rest = &m[at..];
    let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let value: f64 = rest[..num_end].parse().ok()?;
    let unit = rest[num_end..].trim_start();
    let secs = if unit.starts_with("ms") || unit.starts_with("millisecond") {
        value / 1000.0
    } else if unit.starts_with('s') {
        value
    } else if unit.starts_with('m') {
        value * 60.0
    } else {
        return None;
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified() {
        let h = |status| ProviderError::Http { status, retry_after: None };
        assert_eq!(h(429).outcome(), Outcome::RateLimited);
        assert_eq!(h(503).outcome(), Outcome::Http5xx);
        assert_eq!(h(401).outcome(), Outcome::Http4xx);
        let rpc = |code, m: &str| ProviderError::Rpc { code, message: m.into(), retry_after: None };
        assert_eq!(rpc(-32005, "limit").outcome(), Outcome::RateLimited);
        assert_eq!(rpc(-32000, "header not found").outcome(), Outcome::RpcError);
        assert_eq!(rpc(-32000, "Rate limit reached").outcome(), Outcome::RateLimited);
        assert_eq!(ProviderError::Null.outcome(), Outcome::NullResult);
    }

    #[test]
    fn retry_hints_in_messages() {
        assert_eq!(retry_hint("rate limited, try again in 400ms"), Some(Duration::from_millis(400)));
        assert_eq!(retry_hint("Please retry in 2s"), Some(Duration::from_secs(2)));
        assert_eq!(retry_hint("try again in 1.5 seconds"), Some(Duration::from_millis(1500)));
        assert_eq!(retry_hint("try again later"), None);
        assert_eq!(retry_hint("header not found"), None);
    }
}
