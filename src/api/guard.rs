//! Who may call what: a per-peer-IP token bucket (the socket's address, never a forwarded
//! header) and the bearer key for SQL and admin routes, compared in constant time.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// Past this many tracked peers, buckets that have refilled are forgotten.
const MAX_TRACKED_PEERS: usize = 10_000;

/// Token bucket per peer IP.
pub(super) struct PeerLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    loopback_too: bool,
    clock: DefaultClock,
}

impl std::fmt::Debug for PeerLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimiter").field("loopback_too", &self.loopback_too).finish_non_exhaustive()
    }
}

impl PeerLimiter {
    pub(super) fn new(rps: f64, burst: u32, loopback_too: bool) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let period = std::time::Duration::from_secs_f64(1.0 / rps.max(1e-3));
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
        Self { limiter: DefaultKeyedRateLimiter::keyed(quota), loopback_too, clock: DefaultClock::default() }
    }

    /// `Err(seconds to wait)` when the peer is over its rate.
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if ip.is_loopback() && !self.loopback_too {
            return Ok(());
        }
        // One bucket per peer ever seen would grow without bound; drop the full (idle) ones.
        if self.limiter.len() > MAX_TRACKED_PEERS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Middleware: 429 with `Retry-After` past the peer's rate.
pub(super) async fn rate_limit(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = peer
        && let Err(wait) = state.0.limiter.check(ip)
    {
        metrics::counter!("blockstreamer_api_rate_limited_total").increment(1);
        return ApiError::RateLimited(wait).into_response();
    }
    next.run(req).await
}

/// The bearer key from `Authorization`, if any.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

fn key_matches(expected: &str, given: Option<&str>) -> bool {
    let given = given.unwrap_or("");
    // ct_eq on unequal lengths returns early on length only, which leaks nothing about content.
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// SQL: open on a loopback-only server without a key; with a key, the key is required.
pub(super) fn check_sql(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.0.opts.api_key {
        None => Ok(()),
        Some(k) if key_matches(k, bearer(headers)) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized),
    }
}

/// Admin routes always need the key; without one configured they are refused.
pub(super) fn check_admin(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.0.opts.api_key {
        Some(k) if key_matches(k, bearer(headers)) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys_compare_exactly() {
        assert!(key_matches("s3cret", Some("s3cret")));
        assert!(!key_matches("s3cret", Some("s3cre")) && !key_matches("s3cret", Some("s3cret!")));
        assert!(!key_matches("s3cret", None) && !key_matches("s3cret", Some("")));
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, axum::http::HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(axum::http::header::AUTHORIZATION, axum::http::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn the_bucket_refuses_past_the_burst() {
        let l = PeerLimiter::new(1.0, 5, false);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let ok = (0..20).filter(|_| l.check(ip).is_ok()).count();
        assert_eq!(ok, 5);
        assert!(l.check(ip).err().is_some_and(|w| w >= 1));
        assert!((0..20).all(|_| l.check(IpAddr::from([127, 0, 0, 1])).is_ok()), "loopback exempt by default");
    }
}
