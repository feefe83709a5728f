//! JSON-RPC 2.0 envelopes: a call as the client sent it (id kept as raw JSON, none for a
//! notification), and the response text around a raw result or an error object.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The codes clients expect (JSON-RPC 2.0 and the Ethereum conventions).
pub(super) mod code {
    pub(in crate::api::rpc) const PARSE_ERROR: i32 = -32700;
    pub(in crate::api::rpc) const INVALID_REQUEST: i32 = -32600;
    pub(in crate::api::rpc) const METHOD_NOT_FOUND: i32 = -32601;
    pub(in crate::api::rpc) const INVALID_PARAMS: i32 = -32602;
    pub(in crate::api::rpc) const INTERNAL: i32 = -32603;
    /// Server errors (geth's generic one).
    pub(in crate::api::rpc) const SERVER: i32 = -32000;
    /// A limit was exceeded (`eth_getLogs` results, response size, batch size, a key's rate).
    pub(in crate::api::rpc) const LIMIT: i32 = -32005;
    /// No API key, or an unknown one.
    pub(in crate::api::rpc) const UNAUTHORIZED: i32 = -32001;
    /// The key may not call this method (EIP-1474's "method not supported").
    pub(in crate::api::rpc) const NOT_ALLOWED: i32 = -32004;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone)]
pub(super) struct RpcError {
    pub(super) code: i32,
    pub(super) message: String,
    pub(super) data: Option<Box<RawValue>>,
}

impl RpcError {
    pub(super) fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub(super) fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }
}

/// One call of a request (or of a batch).
#[derive(Debug, Clone)]
pub(super) struct Call<'a> {
    /// The id as sent (`null` included); `None` for a notification, which gets no response.
    pub(super) id: Option<&'a RawValue>,
    pub(super) method: String,
    /// `[]` when the client sent none.
    pub(super) params: Option<&'a RawValue>,
}

/// A call that could not be read: its id if one was found, and why.
pub(super) type Unreadable<'a> = (Option<&'a RawValue>, RpcError);

/// Read one call object.
pub(super) fn call(v: &RawValue) -> Result<Call<'_>, Unreadable<'_>> {
    let invalid = |id, m: &str| (id, RpcError::new(code::INVALID_REQUEST, m.to_string()));
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(v.get()) else {
        return Err(invalid(None, "a call must be a JSON object"));
    };
    let id = fields.get("id").copied();
    if let Some(i) = id
        && !matches!(i.get().as_bytes().first(), Some(b'"' | b'n' | b'-' | b'0'..=b'9'))
    {
        return Err(invalid(None, "id must be a string, a number or null"));
    }
    if fields.get("jsonrpc").map(|v| v.get()) != Some("\"2.0\"") {
        return Err(invalid(id, "jsonrpc must be \"2.0\""));
    }
    let Some(Ok(method)) = fields.get("method").map(|m| serde_json::from_str::<String>(m.get())) else {
        return Err(invalid(id, "method must be a string"));
    };
    let params = fields.get("params").copied();
    if let Some(p) = params
        && !matches!(p.get().as_bytes().first(), Some(b'[' | b'{'))
    {
        return Err((id, RpcError::invalid_params("params must be an array or an object")));
    }
    Ok(Call { id, method, params })
}

/// The response text for `id` with a raw `result`.
pub(super) fn result(id: Option<&RawValue>, result: &str) -> String {
    let id = id.map_or("null", RawValue::get);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// The response text for `id` with `error`.
pub(super) fn error(id: Option<&RawValue>, e: &RpcError) -> String {
    let id = id.map_or("null", RawValue::get);
    // Serialising a string cannot fail.
    let message = serde_json::to_string(&e.message).unwrap_or_else(|_| "\"error\"".into());
    match &e.data {
        Some(d) => {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{},"message":{message},"data":{}}}}}"#,
                e.code,
                d.get()
            )
        }
        None => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{},"message":{message}}}}}"#, e.code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::rpc::test_raw as raw;

    #[test]
    fn reads_calls_and_notifications_and_refuses_bad_ones() {
        let r = raw(r#"{"jsonrpc":"2.0","id":7,"method":"eth_blockNumber"}"#);
        let c = call(&r).unwrap();
        assert_eq!(
            (c.id.map(RawValue::get), c.method.as_str(), c.params.is_none()),
            (Some("7"), "eth_blockNumber", true)
        );
        let r = raw(r#"{"jsonrpc":"2.0","id":null,"method":"m","params":[1]}"#);
        assert_eq!(call(&r).unwrap().id.map(RawValue::get), Some("null"));
        let r = raw(r#"{"jsonrpc":"2.0","method":"m"}"#);
        assert!(call(&r).unwrap().id.is_none());
        for bad in [
            r#"{"id":1,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            "[1]",
            r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#,
        ] {
            assert_eq!(call(&raw(bad)).unwrap_err().1.code, code::INVALID_REQUEST, "{bad}");
        }
        let r = raw(r#"{"jsonrpc":"2.0","id":"a","method":"m","params":5}"#);
        assert_eq!(call(&r).unwrap_err().1.code, code::INVALID_PARAMS);
    }

    #[test]
    fn writes_results_and_errors_around_the_id() {
        let id = raw("\"x\"");
        assert_eq!(result(Some(&id), "\"0x1\""), r#"{"jsonrpc":"2.0","id":"x","result":"0x1"}"#);
        let e = RpcError { code: 3, message: "execution reverted".into(), data: Some(raw("\"0x08c379a0\"")) };
        assert_eq!(
            error(None, &e),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":3,"message":"execution reverted","data":"0x08c379a0"}}"#
        );
    }
}
