//! The API's errors: each a status and `{"error": {"code", "message"}}`, and the middleware
//! that gives the same shape to errors made outside the handlers (405 from the method router,
//! a timeout's 503, anything else without a JSON body).

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use super::body;
use super::sandbox::SandboxError;
use crate::store::StoreError;

/// Errors a route answers with: a status and `{"error": {"code", "message"}}`.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("a valid API key is required (Authorization: Bearer KEY)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    QueryTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body did not arrive within {0} ms")]
    RequestTimeout(u64),
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(super) fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::QueryTimeout(_) => (StatusCode::BAD_REQUEST, "query_timeout"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "read_only"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Self::HeadersTooLarge(_) => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() && !matches!(self, Self::Busy(_) | Self::Unavailable(_)) {
            tracing::warn!(error = %self, "api error");
        }
        let message = self.to_string();
        let body = body::ErrorBody { error: body::ErrorDetail { code, message: &message } };
        let mut resp = (status, Json(body)).into_response();
        let retry = match self {
            Self::RateLimited(s) => Some(s.max(1)),
            Self::Busy(_) => Some(1),
            _ => None,
        };
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReadOnly => Self::Conflict(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let m = e.to_string();
        match e {
            SandboxError::NotOneStatement
            | SandboxError::Empty
            | SandboxError::NotReadOnly
            | SandboxError::Sql(_)
            | SandboxError::Param { .. } => Self::BadRequest(m),
            SandboxError::Denied(_) => Self::Forbidden(m),
            SandboxError::Timeout(_) => Self::QueryTimeout(m),
            SandboxError::TooLarge(_) | SandboxError::TooBig(_) => Self::TooLarge(m),
            SandboxError::Busy(_) => Self::Busy(m),
            SandboxError::Internal(_) => Self::Internal(m),
        }
    }
}

/// Give every error response the JSON error shape: one made by a handler already has it; one
/// made by axum or a layer (405 Method Not Allowed, a timeout's 503, …) is rewritten, keeping
/// its status and headers (`Allow`, `Retry-After`) and its text as the message.
pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let message = match text {
        Ok(t) if !t.is_empty() => t,
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let json = serde_json::to_vec(&body::ErrorBody { error: body::ErrorDetail { code, message: &message } })
        .unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(json))
}
