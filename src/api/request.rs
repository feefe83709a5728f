//! The request itself, checked before any handler runs: the head's size, the `Host` it names
//! and the `Origin` it comes from (DNS rebinding and cross-site requests against a keyless
//! loopback API), the POST content type, and the body's size and arrival time.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Longest request URI (path and query) answered; longer gets 414.
const MAX_URI: usize = 8 << 10;
/// Most header bytes (names and values) and header lines answered; more gets 431.
const MAX_HEADER_BYTES: usize = 32 << 10;
const MAX_HEADERS: usize = 100;

/// The request head and where it comes from, checked before any handler runs:
/// - the URI and header sizes (414, 431);
/// - `Host` must name this server: localhost names, the bound address, or `[api] allowed_hosts`
///   (403 otherwise) — what geth's `--http.vhosts` does against DNS rebinding;
/// - a browser's cross-origin request (an `Origin` that is not the `Host`) is refused unless
///   the origin is in `[api] cors_origins` (403), which also answers preflights and sets
///   `Access-Control-Allow-Origin`;
/// - POST bodies must be `Content-Type: application/json` (415), so no HTML form or
///   `text/plain` request can reach them.
pub(super) async fn check_request(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    match admit(&state, &req) {
        Err(e) => e.into_response(),
        Ok(Admit::Preflight(origin)) => preflight(&origin),
        Ok(Admit::Go(cors)) => {
            let mut resp = next.run(req).await;
            if let Some(origin) = cors {
                allow_origin(resp.headers_mut(), &origin);
            }
            resp
        }
    }
}

enum Admit {
    /// Serve it; with the origin to name in `Access-Control-Allow-Origin`, if cross-origin.
    Go(Option<HeaderValue>),
    /// An allowed cross-origin preflight: answer it here.
    Preflight(HeaderValue),
}

fn admit(state: &ApiState, req: &Request) -> Result<Admit, ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return Err(ApiError::UriTooLong(MAX_URI));
    }
    let headers = req.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge(format!(
            "request headers too large: {} lines, {header_bytes} bytes (at most {MAX_HEADERS} lines, {MAX_HEADER_BYTES} bytes)",
            headers.len()
        )));
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(h) = host
        && !host_allowed(state, h)
    {
        return Err(ApiError::Forbidden(format!(
            "Host {h:?} is not this server's; add it to [api] allowed_hosts to serve it"
        )));
    }
    let cors = match headers.get(header::ORIGIN) {
        None => None,
        Some(o) if same_origin(o, host) => None,
        Some(o) if origin_allowed(state, o) => Some(o.clone()),
        Some(o) => {
            let shown = o.to_str().unwrap_or("(not text)");
            return Err(ApiError::Forbidden(format!(
                "cross-origin request from {shown:?} refused; add the origin to [api] cors_origins to allow it"
            )));
        }
    };
    if req.method() == Method::OPTIONS
        && let Some(origin) = cors
    {
        return Ok(Admit::Preflight(origin));
    }
    if req.method() == Method::POST {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "POST bodies must be Content-Type: application/json, got {ct:?} (curl: -H 'content-type: application/json')"
            )));
        }
    }
    Ok(Admit::Go(cors))
}

/// The host part of a `Host` header or an origin's authority (no port, no brackets).
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn host_allowed(state: &ApiState, host: &str) -> bool {
    let name = host_part(host);
    if ["localhost", "127.0.0.1", "::1"].iter().any(|l| name.eq_ignore_ascii_case(l))
        || name.to_ascii_lowercase().ends_with(".localhost")
    {
        return true;
    }
    if let Some(bound) = state.0.bound.get()
        && !bound.ip().is_unspecified()
        && name.parse::<IpAddr>().is_ok_and(|ip| ip == bound.ip())
    {
        return true;
    }
    state.0.opts.allowed_hosts.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(name))
}

/// Does the `Origin` name the same host and port the request was sent to?
fn same_origin(origin: &HeaderValue, host: Option<&str>) -> bool {
    let (Ok(o), Some(h)) = (origin.to_str(), host) else { return false };
    let authority = o.strip_prefix("http://").or_else(|| o.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(h))
}

fn origin_allowed(state: &ApiState, origin: &HeaderValue) -> bool {
    let Ok(o) = origin.to_str() else { return false };
    state.0.opts.cors_origins.iter().any(|c| c == "*" || c.trim_end_matches('/').eq_ignore_ascii_case(o))
}

fn allow_origin(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

fn preflight(origin: &HeaderValue) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    allow_origin(h, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization, last-event-id"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

/// Read the whole request body before the handler runs: at most `max_body_bytes` (413, told
/// before reading when `Content-Length` says so) within `request_timeout_ms` (408: a client
/// dripping its body is the client's delay, not the server's).
pub(super) async fn read_body(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    // A JSON-RPC batch or a large raw transaction is bigger than any REST body (geth: 5 MB).
    let limit =
        if req.uri().path() == "/rpc" { state.0.opts.rpc.max_request_bytes } else { state.0.opts.max_body_bytes };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::TooLarge(format!(
            "request body of {} bytes is over the {limit}-byte limit",
            declared.unwrap_or(0)
        ))
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let deadline = state.0.opts.request_timeout;
    let read =
        tokio::time::timeout(deadline, http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)));
    let bytes = match read.await {
        Err(_) => {
            return ApiError::RequestTimeout(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)).into_response();
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::TooLarge(format!("request body is over the {limit}-byte limit")).into_response();
        }
        Ok(Err(e)) => return ApiError::BadRequest(format!("request body: {e}")).into_response(),
        Ok(Ok(b)) => b.to_bytes(),
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parts_drop_the_port() {
        assert_eq!(host_part("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_part("localhost"), "localhost");
        assert_eq!(host_part("[::1]:8080"), "::1");
        assert_eq!(host_part("evil.example:80"), "evil.example");
        let o = HeaderValue::from_static("http://127.0.0.1:8080");
        assert!(same_origin(&o, Some("127.0.0.1:8080")));
        assert!(!same_origin(&o, Some("127.0.0.1:9090")));
        assert!(!same_origin(&HeaderValue::from_static("null"), Some("127.0.0.1:8080")));
    }
}
