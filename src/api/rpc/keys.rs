//! Who is calling `/rpc`: the named keys of `[[rpc.keys]]`, each with its own token bucket and
//! method allowlist, found by the key a request carries (`Authorization: Bearer KEY` or the
//! path `/rpc/KEY`), compared in constant time.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use subtle::ConstantTimeEq;

use super::envelope::{RpcError, code};
use crate::api::guard::bearer;
use crate::config::RpcKey;

/// One configured key.
struct Key {
    name: String,
    secret: Vec<u8>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Exact names, or prefixes (a pattern that ended in `*`).
    exact: Vec<String>,
    prefixes: Vec<String>,
    read_only: bool,
}

/// The keys and whether calls without one are served.
pub(in crate::api) struct KeyRing {
    keys: Vec<Arc<Key>>,
    anonymous: bool,
    clock: DefaultClock,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("KeyRing").field("keys", &names).field("anonymous", &self.anonymous).finish()
    }
}

/// The caller of one request: a key, or nobody.
#[derive(Clone, Default)]
pub(super) struct Client(Option<Arc<Key>>);

/// Why a request was refused before any of its calls ran.
#[derive(Debug)]
pub(super) enum Refusal {
    /// No key, or one that is not configured (HTTP 401).
    Unauthorized(&'static str),
    /// Over the key's rate: seconds until the calls would fit (HTTP 429).
    RateLimited { name: String, wait_secs: u64 },
}

impl Refusal {
    /// The JSON-RPC error a client reads.
    pub(super) fn error(&self) -> RpcError {
        match self {
            Self::Unauthorized(why) => RpcError::new(code::UNAUTHORIZED, *why),
            Self::RateLimited { name, wait_secs } => RpcError::new(
                code::LIMIT,
                format!("rate limit exceeded for key {name:?}: retry in {wait_secs} s ([[rpc.keys]] rate_per_second)"),
            ),
        }
    }
}

fn limiter(k: &RpcKey) -> Option<DefaultDirectRateLimiter> {
    let rate = k.rate_per_second?;
    // One second's worth; the rate was checked positive and finite, and is clamped first.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let burst = k.burst.unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
    let period = std::time::Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let quota = Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    Some(DefaultDirectRateLimiter::direct(quota))
}

impl KeyRing {
    /// From the resolved keys (secrets expanded) and `[rpc] anonymous`.
    pub(in crate::api) fn new(keys: &[RpcKey], anonymous: Option<bool>) -> Self {
        let keys = keys
            .iter()
            .map(|k| {
                let (prefixes, exact): (Vec<&String>, Vec<&String>) = k.methods.iter().partition(|m| m.ends_with('*'));
                Arc::new(Key {
                    name: k.name.clone(),
                    secret: k.key.as_bytes().to_vec(),
                    limiter: limiter(k),
                    exact: exact.into_iter().cloned().collect(),
                    prefixes: prefixes.into_iter().map(|p| p.trim_end_matches('*').to_string()).collect(),
                    read_only: k.read_only,
                })
            })
            .collect::<Vec<_>>();
        let anonymous = anonymous.unwrap_or(keys.is_empty());
        Self { keys, anonymous, clock: DefaultClock::default() }
    }

    /// The client of a request carrying `given` (from the path, else the bearer header).
    pub(super) fn client(&self, path_key: Option<&str>, headers: &HeaderMap) -> Result<Client, Refusal> {
        // Without keys, a bearer header is not for us (it may be the API's admin key).
        let header = if self.keys.is_empty() { None } else { bearer(headers) };
        let Some(given) = path_key.or(header) else {
            return if self.anonymous {
                Ok(Client(None))
            } else {
                Err(Refusal::Unauthorized("this endpoint needs an API key: Authorization: Bearer KEY, or /rpc/KEY"))
            };
        };
        if self.keys.is_empty() {
            return Err(Refusal::Unauthorized("no [[rpc.keys]] are configured: call /rpc without a key"));
        }
        // Every key is compared, so the time taken says nothing about which one was close.
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.secret.ct_eq(given.as_bytes())) {
                found = Some(k.clone());
            }
        }
        found.map(|k| Client(Some(k))).ok_or(Refusal::Unauthorized("unknown API key"))
    }

    /// Take `calls` tokens from the client's bucket (all or none).
    pub(super) fn charge(&self, client: &Client, calls: u32) -> Result<(), Refusal> {
        let Some(k) = &client.0 else { return Ok(()) };
        let Some(l) = &k.limiter else { return Ok(()) };
        let n = NonZeroU32::new(calls).unwrap_or(NonZeroU32::MIN);
        let refused = |wait: std::time::Duration| Refusal::RateLimited {
            name: k.name.clone(),
            wait_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        };
        match l.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refused(not_until.wait_time_from(self.clock.now()))),
            // More calls than the burst: they can never fit at once.
            Err(_) => Err(Refusal::RateLimited { name: k.name.clone(), wait_secs: 0 }),
        }
    }
}

impl Client {
    /// The key's name (`None`: no key).
    pub(super) fn name(&self) -> Option<&str> {
        self.0.as_ref().map(|k| k.name.as_str())
    }

    /// May this client call `method`?
    pub(super) fn permits(&self, method: &str, is_write: bool) -> Result<(), RpcError> {
        let Some(k) = &self.0 else { return Ok(()) };
        if is_write && k.read_only {
            return Err(RpcError::new(
                code::NOT_ALLOWED,
                format!("{method} is a write; key {:?} is read-only", k.name),
            ));
        }
        if k.exact.iter().any(|m| m == method) || k.prefixes.iter().any(|p| method.starts_with(p.as_str())) {
            return Ok(());
        }
        Err(RpcError::new(
            code::NOT_ALLOWED,
            format!("{method} is not allowed for key {:?} ([[rpc.keys]] methods)", k.name),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str, methods: &[&str], read_only: bool, rate: Option<f64>) -> RpcKey {
        RpcKey {
            name: name.into(),
            key: secret.into(),
            rate_per_second: rate,
            burst: None,
            methods: methods.iter().map(|m| (*m).to_string()).collect(),
            read_only,
        }
    }

    #[test]
    fn keys_name_clients_and_limit_their_methods() {
        let ring = KeyRing::new(
            &[
                key("public", "pub-1", &["eth_get*", "eth_chainId"], true, Some(2.0)),
                key("bot", "bot-1", &["*"], false, None),
            ],
            None,
        );
        let h = HeaderMap::new();
        assert!(matches!(ring.client(None, &h), Err(Refusal::Unauthorized(_))), "keys configured: anonymous refused");
        assert!(matches!(ring.client(Some("nope"), &h), Err(Refusal::Unauthorized("unknown API key"))));
        let public = ring.client(Some("pub-1"), &h).unwrap_or_default();
        assert_eq!(public.name(), Some("public"));
        assert!(public.permits("eth_getBlockByNumber", false).is_ok() && public.permits("eth_chainId", false).is_ok());
        assert_eq!(public.permits("eth_call", false).map_err(|e| e.code), Err(code::NOT_ALLOWED));
        assert_eq!(public.permits("eth_getX", true).map_err(|e| e.code), Err(code::NOT_ALLOWED), "read-only");
        let mut bearer = HeaderMap::new();
        bearer.insert(axum::http::header::AUTHORIZATION, axum::http::HeaderValue::from_static("Bearer bot-1"));
        let bot = ring.client(None, &bearer).unwrap_or_default();
        assert_eq!(bot.name(), Some("bot"));
        assert!(bot.permits("eth_sendRawTransaction", true).is_ok());
        // Two per second, burst two: a third call at once is refused, a batch of 5 never fits.
        assert!(ring.charge(&public, 1).is_ok() && ring.charge(&public, 1).is_ok());
        assert!(matches!(ring.charge(&public, 1), Err(Refusal::RateLimited { wait_secs: 1, .. })));
        assert!(ring.charge(&public, 5).is_err());
        assert!((0..100).all(|_| ring.charge(&bot, 10).is_ok()), "no rate set: no limit");
        let open = KeyRing::new(&[], None);
        assert_eq!(open.client(None, &h).map(|c| c.name().map(str::to_string)).ok(), Some(None));
        assert!(open.client(None, &bearer).is_ok_and(|c| c.name().is_none()), "a bearer header is not for /rpc then");
        assert!(open.client(Some("x"), &h).is_err(), "a key in the path, and no keys: refused");
    }
}
