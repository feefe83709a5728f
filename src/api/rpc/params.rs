//! Reading a call's params as a node does: block tags and numbers, EIP-1898 block objects,
//! hashes, indexes, booleans and `eth_getLogs` filters, each with a node-like error.

use alloy_primitives::B256;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::envelope::RpcError;

/// A block named by tag or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    Number(u64),
    Latest,
    Earliest,
    Pending,
    Safe,
    Finalized,
}

/// A block named by tag, number or hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockId {
    Tag(Tag),
    Hash(B256),
}

/// The positional params (`[]` when none were sent; an object is refused).
pub(super) fn positional(params: Option<&RawValue>) -> Result<Vec<&RawValue>, RpcError> {
    match params {
        None => Ok(Vec::new()),
        Some(p) => serde_json::from_str(p.get()).map_err(|_| RpcError::invalid_params("params must be an array")),
    }
}

fn text<'a>(v: &'a RawValue, what: &str) -> Result<&'a str, RpcError> {
    serde_json::from_str::<&str>(v.get())
        .map_err(|_| RpcError::invalid_params(format!("{what}: expected a string, got {}", v.get())))
}

/// A hex quantity (`0x` and at most 16 digits, no leading zeros but `0x0`).
pub(super) fn quantity(v: &RawValue, what: &str) -> Result<u64, RpcError> {
    let s = text(v, what)?;
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::invalid_params(format!("{what}: hex string without 0x prefix")))?;
    if digits.is_empty() || digits.len() > 16 || (digits.len() > 1 && digits.starts_with('0')) {
        return Err(RpcError::invalid_params(format!("{what}: invalid hex quantity {s:?}")));
    }
    u64::from_str_radix(digits, 16).map_err(|_| RpcError::invalid_params(format!("{what}: invalid hex quantity {s:?}")))
}

/// A 32-byte hash.
pub(super) fn hash(v: &RawValue, what: &str) -> Result<B256, RpcError> {
    let s = text(v, what)?;
    let ok = s.len() == 66 && s.starts_with("0x");
    s.parse::<B256>()
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| RpcError::invalid_params(format!("{what}: invalid 32-byte hash {s:?}")))
}

pub(super) fn boolean(v: &RawValue, what: &str) -> Result<bool, RpcError> {
    serde_json::from_str(v.get())
        .map_err(|_| RpcError::invalid_params(format!("{what}: expected a boolean, got {}", v.get())))
}

/// A tag or a number.
pub(super) fn tag(v: &RawValue) -> Result<Tag, RpcError> {
    Ok(match text(v, "block")? {
        "latest" => Tag::Latest,
        "earliest" => Tag::Earliest,
        "pending" => Tag::Pending,
        "safe" => Tag::Safe,
        "finalized" => Tag::Finalized,
        _ => Tag::Number(quantity(v, "block")?),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BlockObject<'a> {
    #[serde(borrow)]
    block_hash: Option<&'a RawValue>,
    block_number: Option<&'a RawValue>,
    #[serde(default)]
    require_canonical: bool,
}

/// A tag, a number, a hash, or an EIP-1898 object (`{"blockHash"}` / `{"blockNumber"}`).
pub(super) fn block_id(v: &RawValue) -> Result<BlockId, RpcError> {
    if v.get().starts_with('{') {
        let o: BlockObject<'_> =
            serde_json::from_str(v.get()).map_err(|e| RpcError::invalid_params(format!("block: {e}")))?;
        let _ = o.require_canonical;
        return match (o.block_hash, o.block_number) {
            (Some(h), None) => Ok(BlockId::Hash(hash(h, "blockHash")?)),
            (None, Some(n)) => Ok(BlockId::Tag(tag(n)?)),
            _ => Err(RpcError::invalid_params("block: give exactly one of blockHash and blockNumber")),
        };
    }
    if text(v, "block")?.len() == 66 {
        return Ok(BlockId::Hash(hash(v, "block")?));
    }
    Ok(BlockId::Tag(tag(v)?))
}

/// An `eth_getLogs` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LogFilter {
    pub(super) from: Option<Tag>,
    pub(super) to: Option<Tag>,
    pub(super) block_hash: Option<B256>,
    pub(super) addresses: Vec<[u8; 20]>,
    pub(super) topics: [Vec<[u8; 32]>; 4],
}

impl LogFilter {
    /// Does the log `log` match the addresses and topics?
    pub(super) fn matches(&self, log: &crate::rawlogs::LogEntry<'_>) -> bool {
        (self.addresses.is_empty() || self.addresses.contains(log.address))
            && self
                .topics
                .iter()
                .enumerate()
                .all(|(i, alts)| alts.is_empty() || log.topics.get(i).is_some_and(|t| alts.contains(t)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RpcFilter<'a> {
    #[serde(borrow)]
    from_block: Option<&'a RawValue>,
    to_block: Option<&'a RawValue>,
    block_hash: Option<&'a RawValue>,
    address: Option<&'a RawValue>,
    topics: Option<Vec<Option<&'a RawValue>>>,
}

fn one_or_many(v: &RawValue) -> Result<Vec<&RawValue>, RpcError> {
    if v.get().starts_with('[') {
        serde_json::from_str(v.get()).map_err(|e| RpcError::invalid_params(format!("filter: {e}")))
    } else {
        Ok(vec![v])
    }
}

fn address(v: &RawValue) -> Result<[u8; 20], RpcError> {
    let s = text(v, "address")?;
    let a = (s.len() == 42 && s.starts_with("0x")).then(|| s.parse::<alloy_primitives::Address>().ok()).flatten();
    a.map(|a| a.0.0).ok_or_else(|| RpcError::invalid_params(format!("address: invalid address {s:?}")))
}

/// The filter object of `eth_getLogs`.
pub(super) fn log_filter(v: &RawValue) -> Result<LogFilter, RpcError> {
    let f: RpcFilter<'_> =
        serde_json::from_str(v.get()).map_err(|e| RpcError::invalid_params(format!("filter: {e}")))?;
    let mut out = LogFilter {
        from: f.from_block.map(tag).transpose()?,
        to: f.to_block.map(tag).transpose()?,
        ..Default::default()
    };
    if let Some(h) = f.block_hash {
        if out.from.is_some() || out.to.is_some() {
            return Err(RpcError::invalid_params("filter: blockHash cannot be combined with fromBlock/toBlock"));
        }
        out.block_hash = Some(hash(h, "blockHash")?);
    }
    if let Some(a) = f.address.filter(|a| a.get() != "null") {
        out.addresses = one_or_many(a)?.into_iter().map(address).collect::<Result<_, _>>()?;
    }
    let topics = f.topics.unwrap_or_default();
    if topics.len() > 4 {
        return Err(RpcError::invalid_params("filter: at most 4 topic positions"));
    }
    for (i, t) in topics.into_iter().enumerate() {
        let Some(t) = t.filter(|t| t.get() != "null") else { continue };
        let list = one_or_many(t)?;
        // A null among the alternatives matches anything at that position, as nodes read it.
        if list.iter().any(|h| h.get() == "null") {
            continue;
        }
        out.topics[i] = list.into_iter().map(|h| hash(h, "topic").map(|h| h.0)).collect::<Result<_, _>>()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::rpc::test_raw as raw;

    #[test]
    fn tags_numbers_hashes_and_objects() {
        assert_eq!(tag(&raw("\"latest\"")).unwrap(), Tag::Latest);
        assert_eq!(tag(&raw("\"0x1f\"")).unwrap(), Tag::Number(31));
        for bad in ["\"1f\"", "\"0x\"", "\"0x01\"", "31", "\"0x10000000000000000\""] {
            assert_eq!(tag(&raw(bad)).unwrap_err().code, -32602, "{bad}");
        }
        let h = format!("\"0x{}\"", "ab".repeat(32));
        assert!(matches!(block_id(&raw(&h)).unwrap(), BlockId::Hash(_)));
        assert_eq!(block_id(&raw(r#"{"blockNumber":"0x2"}"#)).unwrap(), BlockId::Tag(Tag::Number(2)));
        assert!(block_id(&raw(r#"{"blockNumber":"0x2","blockHash":"0x00"}"#)).is_err());
    }

    #[test]
    fn log_filters_as_a_node_reads_them() {
        let t = format!("0x{}", "11".repeat(32));
        let f = log_filter(&raw(&format!(
            r#"{{"fromBlock":"0x1","toBlock":"latest","address":"0x{a}","topics":[null,["{t}","{t}"]]}}"#,
            a = "22".repeat(20)
        )))
        .unwrap();
        assert_eq!(
            (f.from, f.to, f.addresses.len(), f.topics[0].len(), f.topics[1].len()),
            (Some(Tag::Number(1)), Some(Tag::Latest), 1, 0, 2)
        );
        assert!(log_filter(&raw(r#"{"topics":[null,null,null,null,null]}"#)).is_err());
        assert!(log_filter(&raw(r#"{"fromBlock":"0x1","blockHash":"0x00"}"#)).is_err());
        assert!(log_filter(&raw(r#"{"address":"0x12"}"#)).is_err());
    }
}
