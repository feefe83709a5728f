//! An HTTP layer under the jsonrpsee client that records status, `Retry-After` and body size.
//!
//! jsonrpsee turns any non-2xx answer into `Rejected { status_code }` and drops the headers, so
//! `Retry-After` would be lost. This layer reads them first and stores them in a task-local slot
//! that the calling future scoped (`with_meta`); the transport runs inside the caller's task,
//! so each concurrent call sees only its own response.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use jsonrpsee::http_client::{HttpRequest, HttpResponse};
use tower::{Layer, Service};

/// What the HTTP layer saw of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    /// Status line, if a response arrived at all.
    pub status: Option<u16>,
    /// `Retry-After`, as seconds or an HTTP date, converted to a wait from now.
    pub retry_after: Option<Duration>,
    /// `Content-Length`, when the server sent one.
    pub content_length: Option<u64>,
}

tokio::task_local! {
    static META: Cell<ResponseMeta>;
}

/// Run `fut` with a fresh metadata slot; returns its output and what the HTTP layer saw.
pub async fn with_meta<F: Future>(fut: F) -> (F::Output, ResponseMeta) {
    META.scope(Cell::new(ResponseMeta::default()), async move {
        let out = fut.await;
        let meta = META.try_with(Cell::get).unwrap_or_default();
        (out, meta)
    })
    .await
}

/// Parse `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The tower layer to pass to `HttpClientBuilder::set_http_middleware`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaLayer;

impl<S> Layer<S> for MetaLayer {
    type Service = MetaService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetaService { inner }
    }
}

/// See [`MetaLayer`].
#[derive(Debug, Clone)]
pub struct MetaService<S> {
    inner: S,
}

impl<S, B> Service<HttpRequest> for MetaService<S>
where
    S: Service<HttpRequest, Response = HttpResponse<B>>,
    S::Future: Send + 'static,
    B: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            if let Ok(resp) = &res {
                let headers = resp.headers();
                let meta = ResponseMeta {
                    status: Some(resp.status().as_u16()),
                    retry_after: headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after),
                    content_length: headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok()),
                };
                // Outside a `with_meta` scope there is nobody to tell; that is fine.
                let _ = META.try_with(|slot| slot.set(meta));
            }
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap_or_default();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
