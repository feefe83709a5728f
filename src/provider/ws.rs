//! WebSocket upstreams: the transport a provider's calls go over (HTTP, or a WebSocket that
//! reconnects when it dropped), and the `newHeads` subscription.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::ClientError;
use jsonrpsee::core::client::{BatchResponse, ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde_json::value::RawValue;

use super::{Client, SecretUrl};

/// Whether a URL names a WebSocket endpoint (`ws://`, `wss://`).
pub fn is_ws(url: &str) -> bool {
    let lower = url.get(..6).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("ws://") || lower.starts_with("wss://")
}

/// Open one WebSocket JSON-RPC connection to `url`.
pub(super) async fn connect(url: &SecretUrl, timeout: Duration, max_bytes: u32) -> Result<WsClient, ClientError> {
    WsClientBuilder::default()
        .connection_timeout(timeout)
        .request_timeout(timeout + Duration::from_secs(1))
        .max_response_size(max_bytes)
        .max_request_size(1 << 20)
        // One notification per block; a consumer that falls this far behind is resubscribed.
        .max_buffer_capacity_per_subscription(1024)
        .build(url.expose())
        .await
}

/// A WebSocket connection for calls, opened on first use and again after it dropped.
#[derive(Debug)]
pub(super) struct WsLink {
    url: SecretUrl,
    timeout: Duration,
    max_bytes: u32,
    client: tokio::sync::Mutex<Option<Arc<WsClient>>>,
}

impl WsLink {
    pub(super) fn new(url: SecretUrl, timeout: Duration, max_bytes: u32) -> Self {
        Self { url, timeout, max_bytes, client: tokio::sync::Mutex::new(None) }
    }

    /// The open connection, or a new one when there is none or it dropped.
    async fn client(&self) -> Result<Arc<WsClient>, ClientError> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref()
            && c.is_connected()
        {
            return Ok(c.clone());
        }
        *g = None;
        // Boxed: the handshake's future is large, and every call future would carry it.
        let c = Arc::new(Box::pin(connect(&self.url, self.timeout, self.max_bytes)).await?);
        *g = Some(c.clone());
        Ok(c)
    }
}

/// What a provider's calls travel over.
#[derive(Debug)]
pub(super) enum Rpc {
    Http(Client),
    Ws(WsLink),
}

impl Rpc {
    /// One call; the raw result.
    pub(super) async fn request<P: jsonrpsee::core::traits::ToRpcParams + Send>(
        &self,
        method: &str,
        params: P,
    ) -> Result<Box<RawValue>, ClientError> {
        match self {
            Self::Http(c) => c.request(method, params).await,
            Self::Ws(l) => Box::pin(async { l.client().await?.request(method, params).await }).await,
        }
    }

    /// One JSON-RPC batch.
    pub(super) async fn batch<'a>(
        &self,
        batch: BatchRequestBuilder<'a>,
    ) -> Result<BatchResponse<'a, Box<RawValue>>, ClientError> {
        match self {
            Self::Http(c) => c.batch_request(batch).await,
            Self::Ws(l) => Box::pin(async { l.client().await?.batch_request(batch).await }).await,
        }
    }
}

/// A live `newHeads` subscription; the connection it runs on is owned here and closed on drop.
#[derive(Debug)]
pub struct HeadSubscription {
    pub(super) sub: Subscription<Box<RawValue>>,
    // Kept alive for the subscription's sake.
    pub(super) _client: WsClient,
}

impl HeadSubscription {
    /// The next notification's raw header; `None` when the connection or the subscription
    /// ended (the caller resubscribes).
    pub async fn next_raw(&mut self) -> Option<Result<Box<RawValue>, String>> {
        match self.sub.next().await? {
            Ok(raw) => Some(Ok(raw)),
            Err(e) => Some(Err(format!("notification is not JSON: {e}"))),
        }
    }
}

/// Subscribe to `newHeads` over a new connection to `url`.
pub(super) async fn subscribe_heads(
    url: &SecretUrl,
    timeout: Duration,
    max_bytes: u32,
) -> Result<HeadSubscription, ClientError> {
    let client = Box::pin(connect(url, timeout, max_bytes)).await?;
    let mut params = ArrayParams::new();
    let _ = params.insert("newHeads");
    let sub = tokio::time::timeout(timeout, client.subscribe("eth_subscribe", params, "eth_unsubscribe"))
        .await
        .map_err(|_| ClientError::RequestTimeout)??;
    Ok(HeadSubscription { sub, _client: client })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_are_recognised() {
        assert!(is_ws("ws://127.0.0.1:8545"));
        assert!(is_ws("WSS://x.io/v2/key"));
        assert!(!is_ws("http://127.0.0.1:8545"));
        assert!(!is_ws("ws"));
    }
}
