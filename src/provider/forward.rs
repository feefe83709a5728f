//! Forwarding a client's call as it came (the `/rpc` endpoint's misses): its params out
//! unchanged, the node's result or the node's own error object back.

use jsonrpsee::core::ClientError;
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::value::RawValue;

use super::{CallCtx, InFlight, Provider, ProviderError, with_meta};

/// A client's params, passed on byte for byte.
#[derive(Debug, Clone)]
pub struct RawParams(pub Option<Box<RawValue>>);

impl ToRpcParams for RawParams {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(self.0)
    }
}

/// What the node said: a result, or an error that is the answer to the call (a revert, a bad
/// nonce, invalid params), not a fault of the provider.
#[derive(Debug, Clone)]
pub enum Answer {
    Result(Box<RawValue>),
    Error(ErrorObjectOwned),
}

/// Is the node's error about the provider (try another: it lacks the state or the block, or
/// it is throttling) rather than about the call? An unknown or unsupported method is the
/// call's answer: were it the provider's fault, a client could trip every breaker by calling
/// methods nobody has.
fn provider_fault(code: i32, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    matches!(code, -32005 | -32029 | -32603 | 429)
        || [
            "header not found",
            "missing trie node",
            "unknown block",
            "block not found",
            "rate limit",
            "too many requests",
            "capacity",
            "historical state",
            "internal error",
        ]
        .iter()
        .any(|k| m.contains(k))
}

impl Provider {
    /// Send `wire_method(params)` as the client wrote it; `method` is its telemetry name,
    /// `need` the height it is pinned to. One telemetry sample. The node's error is an
    /// [`Answer::Error`] when it is the call's answer, a [`ProviderError`] when another
    /// provider could do better.
    pub async fn forward(
        &self,
        method: &'static str,
        wire_method: &str,
        params: RawParams,
        need: Option<u64>,
        ctx: CallCtx,
    ) -> Result<Answer, ProviderError> {
        let started = std::time::Instant::now();
        let guard = InFlight { provider: self, method, numbers: vec![need], started, ctx, done: false };
        let timeout = self.spec.block_timeout;
        let fut = self.block_client.request(wire_method, params);
        let (res, meta) = with_meta(tokio::time::timeout(timeout, fut)).await;
        guard.finish();
        let mut s = self.sample(method, need, started, ctx);
        s.http_status = meta.status;
        s.bytes = meta.content_length;
        let out = match res {
            Err(_) => Err(ProviderError::Timeout(timeout)),
            Ok(Ok(raw)) => {
                s.bytes = Some(meta.content_length.unwrap_or(raw.get().len() as u64));
                Ok(Answer::Result(raw))
            }
            Ok(Err(ClientError::Call(obj))) if !provider_fault(obj.code(), obj.message()) => {
                // Recorded as the node's error, but the provider did its job.
                s.outcome = crate::model::Outcome::RpcError;
                s.rpc_code = Some(obj.code());
                s.error = Some(super::truncate_err(obj.message()));
                Ok(Answer::Error(obj))
            }
            Ok(Err(e)) => Err(self.classify(e, meta)),
        };
        if let Err(e) = &out {
            self.fail_sample(&mut s, e);
        }
        self.emit(s);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::provider_fault;

    #[test]
    fn reverts_are_answers_and_missing_state_is_the_providers() {
        assert!(!provider_fault(3, "execution reverted: not owner"));
        assert!(!provider_fault(-32000, "nonce too low"));
        assert!(!provider_fault(-32602, "invalid params"));
        assert!(provider_fault(-32000, "missing trie node abc (path )"));
        assert!(provider_fault(-32000, "header not found"));
        assert!(!provider_fault(-32601, "the method eth_foo does not exist"));
        assert!(provider_fault(-32005, "limit exceeded"));
    }
}
