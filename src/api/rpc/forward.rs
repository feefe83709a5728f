//! The calls `/rpc` passes to the fleet: which height a state read is pinned to, which methods
//! are writes (one provider, once), which are refused, and the node's answer turned back into
//! the client's response.

use alloy_primitives::keccak256;
use serde_json::value::RawValue;

use super::Source;
use super::envelope::{Call, RpcError, code};
use super::params::{self, BlockId, Tag};
use crate::fleet::Fleet;
use crate::fleet::forward::Forwarded;
use crate::provider::forward::{Answer, RawParams};

/// Methods sent to exactly one provider: never hedged, never retried once they may have arrived.
const WRITES: [&str; 3] = ["eth_sendRawTransaction", "eth_sendRawTransactionSync", "eth_sendTransaction"];

/// Methods whose block parameter is at this position.
const PINNED: [(&str, usize); 9] = [
    ("eth_call", 1),
    ("eth_estimateGas", 1),
    ("eth_createAccessList", 1),
    ("eth_getBalance", 1),
    ("eth_getCode", 1),
    ("eth_getTransactionCount", 1),
    ("eth_getStorageAt", 2),
    ("eth_getProof", 2),
    ("eth_feeHistory", 1),
];

/// Telemetry names of the other methods commonly called (besides the local ones; others are
/// recorded as `other`).
const NAMES: [&str; 37] = [
    "eth_call",
    "eth_estimateGas",
    "eth_createAccessList",
    "eth_getBalance",
    "eth_getCode",
    "eth_getTransactionCount",
    "eth_getStorageAt",
    "eth_getProof",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_syncing",
    "eth_accounts",
    "eth_sendRawTransaction",
    "eth_sendRawTransactionSync",
    "eth_sendTransaction",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleByBlockHashAndIndex",
    "eth_simulateV1",
    "eth_protocolVersion",
    "net_listening",
    "net_peerCount",
    "web3_clientVersion",
    "web3_sha3",
    "debug_traceTransaction",
    "debug_traceCall",
    "trace_block",
    "trace_transaction",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_subscribe",
    "eth_unsubscribe",
];

/// Why `method` is refused here, if it is: filters and subscriptions live on one node's
/// memory, and behind a fleet the next call may reach another node.
pub(super) fn refused(method: &str) -> Option<String> {
    match method {
        "eth_newFilter"
        | "eth_newBlockFilter"
        | "eth_newPendingTransactionFilter"
        | "eth_getFilterChanges"
        | "eth_getFilterLogs"
        | "eth_uninstallFilter" => Some(format!(
            "{method} is not served: filters live on one node and the fleet's providers change; poll eth_getLogs over block ranges, or eth_subscribe over WebSocket on this path"
        )),
        "eth_subscribe" | "eth_unsubscribe" => Some(format!(
            "{method} needs a WebSocket: connect to this same path with ws:// (or, over HTTP, follow /v1/stream/blocks or /v1/stream/logs)"
        )),
        _ => None,
    }
}

/// Is `method` a write (sent once, to one provider; refused for read-only keys)?
pub(super) fn is_write(method: &str) -> bool {
    WRITES.contains(&method)
}

/// The `'static` name telemetry records a method under.
pub(super) fn name(method: &str) -> &'static str {
    super::local::METHODS.iter().chain(NAMES.iter()).find(|n| **n == method).copied().unwrap_or("other")
}

/// The height a forwarded call must be served at or above: its block parameter's number, or
/// for `latest` the fleet head, so no provider behind the others answers.
pub(super) fn pin(method: &str, params: Option<&RawValue>, fleet_head: Option<u64>) -> Result<Option<u64>, RpcError> {
    let Some((_, at)) = PINNED.iter().find(|(m, _)| *m == method) else { return Ok(None) };
    let p = params::positional(params)?;
    let Some(v) = p.get(*at) else { return Ok(fleet_head) };
    Ok(match params::block_id(v)? {
        BlockId::Tag(Tag::Number(n)) => Some(n),
        BlockId::Tag(Tag::Latest) => fleet_head,
        _ => None,
    })
}

/// Send the call through the fleet and turn the answer into the client's.
pub(super) async fn send(fleet: &Fleet, call: &Call<'_>, need: Option<u64>) -> (Result<String, RpcError>, Source) {
    let method = call.method.as_str();
    let raw = RawParams(call.params.map(RawValue::to_owned));
    let out = if WRITES.contains(&method) {
        fleet.forward_write(name(method), method, raw).await
    } else {
        fleet.forward_read(name(method), method, raw, need).await
    };
    match out {
        Ok(Forwarded { provider, answer: Answer::Result(r) }) => (Ok(r.get().to_string()), Source::Provider(provider)),
        Ok(Forwarded { provider, answer: Answer::Error(e) }) => {
            let data = e.data().map(RawValue::to_owned);
            (Err(RpcError { code: e.code(), message: e.message().to_string(), data }), Source::Provider(provider))
        }
        Err(crate::fleet::FleetError::WriteUncertain { provider, error }) => {
            let mut e = RpcError::new(
                code::SERVER,
                format!(
                    "{provider} did not confirm the transaction ({error}); it may have been sent, so it was not sent to another provider: look it up by hash before sending it again"
                ),
            );
            e.data = tx_hash(call.params);
            (Err(e), Source::Provider(provider))
        }
        Err(e) => (Err(RpcError::new(code::SERVER, e.to_string())), Source::Endpoint),
    }
}

/// `{"transactionHash": …}` of a raw transaction param (keccak of its bytes: the hash of a
/// legacy or typed transaction; not of a blob transaction sent with its sidecar).
fn tx_hash(params: Option<&RawValue>) -> Option<Box<RawValue>> {
    let p = params::positional(params).ok()?;
    let hex: &str = serde_json::from_str(p.first()?.get()).ok()?;
    let bytes = alloy_primitives::hex::decode(hex).ok()?;
    RawValue::from_string(format!(r#"{{"transactionHash":"{}"}}"#, keccak256(bytes))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::rpc::test_raw as raw;

    #[test]
    fn state_reads_are_pinned_to_their_block() {
        let p = raw(r#"[{"to":"0x00"},"0x10"]"#);
        assert_eq!(pin("eth_call", Some(&p), Some(99)).unwrap(), Some(16));
        let p = raw(r#"[{"to":"0x00"},"latest"]"#);
        assert_eq!(pin("eth_call", Some(&p), Some(99)).unwrap(), Some(99));
        let p = raw(r#"["0x01","0x0","finalized"]"#);
        assert_eq!(pin("eth_getStorageAt", Some(&p), Some(99)).unwrap(), None);
        assert_eq!(pin("eth_gasPrice", None, Some(99)).unwrap(), None);
        assert!(pin("eth_getBalance", Some(&raw(r#"["0x01","bad"]"#)), None).is_err());
    }

    #[test]
    fn filters_and_http_subscriptions_are_refused_with_a_reason() {
        assert!(refused("eth_newFilter").is_some_and(|m| m.contains("eth_getLogs")));
        assert!(refused("eth_subscribe").is_some());
        assert!(refused("eth_call").is_none());
        assert_eq!(name("eth_call"), "eth_call");
        assert_eq!(name("my_custom"), "other");
    }

    #[test]
    fn the_hash_of_a_raw_transaction_is_named_when_a_write_is_uncertain() {
        let p = raw(r#"["0x02f8"]"#);
        let d = tx_hash(Some(&p)).unwrap();
        assert!(d.get().contains(&format!("{}", keccak256([0x02, 0xf8]))));
    }
}
