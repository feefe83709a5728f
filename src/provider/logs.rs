//! `eth_getLogs`: one block range of one filter asked of one provider; the answer decoded
//! strictly (every position field present, no `removed` log), and a refusal of the range told
//! apart from other errors, with the range the provider suggests when it says one.

use alloy_primitives::{B256, LogData};
use jsonrpsee::core::params::ArrayParams;
use serde::Deserialize;

use super::wire::{Reject, address, bytes, hash, quantity};
use super::{CallCtx, Provider, ProviderError, method, push};
use crate::index::LogFilter;
use crate::model::{CapabilityMethod, Log};

/// One log as `eth_getLogs` returned it, with the block it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedLog {
    pub block_number: u64,
    pub block_hash: B256,
    pub log: Log,
}

/// A log as providers send it (in `eth_getLogs` answers and inside receipts, where the position
/// fields may be absent).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RpcLog<'a> {
    #[serde(borrow)]
    pub(super) address: &'a str,
    pub(super) topics: Vec<&'a str>,
    pub(super) data: &'a str,
    pub(super) log_index: Option<&'a str>,
    pub(super) transaction_index: Option<&'a str>,
    pub(super) transaction_hash: Option<&'a str>,
    pub(super) block_hash: Option<&'a str>,
    pub(super) block_number: Option<&'a str>,
    #[serde(default)]
    pub(super) removed: bool,
}

fn bad(i: usize, why: impl Into<String>) -> Reject {
    Reject::Log { index: i, why: why.into() }
}

/// Decode an `eth_getLogs` answer.
pub fn decode_logs(raw: &str) -> Result<Vec<FetchedLog>, Reject> {
    let list: Vec<RpcLog<'_>> = serde_json::from_str(raw).map_err(|e| Reject::NotAnObject(format!("logs: {e}")))?;
    list.iter().enumerate().map(|(i, l)| one(i, l)).collect()
}

fn one(i: usize, l: &RpcLog<'_>) -> Result<FetchedLog, Reject> {
    let e = |x: Reject| bad(i, x.to_string());
    let need = |k: &'static str, v: Option<&str>| {
        v.map(str::to_string).ok_or_else(|| bad(i, format!("no {k} (a pending log?)")))
    };
    if l.removed {
        return Err(bad(i, "marked removed"));
    }
    if l.topics.len() > 4 {
        return Err(bad(i, format!("{} topics (at most 4)", l.topics.len())));
    }
    let u32_of = |k: &'static str, v: &str| -> Result<u32, Reject> {
        u32::try_from(quantity(k, v).map_err(e)?).map_err(|_| bad(i, format!("{k} above 2^32")))
    };
    let topics = l.topics.iter().map(|t| hash("topics", t)).collect::<Result<Vec<_>, _>>().map_err(e)?;
    let data = LogData::new_unchecked(topics, bytes("data", l.data).map_err(e)?);
    Ok(FetchedLog {
        block_number: quantity("blockNumber", &need("blockNumber", l.block_number)?).map_err(e)?,
        block_hash: hash("blockHash", &need("blockHash", l.block_hash)?).map_err(e)?,
        log: Log {
            log_index: u32_of("logIndex", &need("logIndex", l.log_index)?)?,
            tx_index: u32_of("transactionIndex", &need("transactionIndex", l.transaction_index)?)?,
            tx_hash: hash("transactionHash", &need("transactionHash", l.transaction_hash)?).map_err(e)?,
            inner: alloy_primitives::Log { address: address("address", l.address).map_err(e)?, data },
        },
    })
}

/// Whether `e` refuses the range asked (`asked` blocks) rather than failing: `Some(span)`, the
/// widest range to ask next — the provider's suggestion when it gave one, else half.
pub fn range_refusal(e: &ProviderError, asked: u64) -> Option<u64> {
    let message = match e {
        ProviderError::Rpc { message, .. } => message.to_ascii_lowercase(),
        ProviderError::TooLarge(_) => return (asked > 1).then(|| (asked / 2).max(1)),
        _ => return None,
    };
    if asked <= 1 || !super::error::says_range(&message) {
        return None;
    }
    let half = (asked / 2).max(1);
    Some(suggested(&message).filter(|s| *s < asked).unwrap_or(half))
}

/// A suggested range in the message: `[0x10, 0x2f]` (Alchemy, Infura), or "up to a 2K block
/// range" / "limited to a 10000 range" / "max 500 blocks".
fn suggested(m: &str) -> Option<u64> {
    if let Some(open) = m.find("[0x") {
        let rest = &m[open + 1..];
        let close = rest.find(']')?;
        let mut parts = rest[..close].split(',').map(str::trim);
        let a = u64::from_str_radix(parts.next()?.strip_prefix("0x")?, 16).ok()?;
        let b = u64::from_str_radix(parts.next()?.strip_prefix("0x")?, 16).ok()?;
        return (b >= a).then(|| b - a + 1);
    }
    // A number next to "block" or "range": "2k block range", "10000 range", "500 blocks".
    let words: Vec<&str> = m.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')').collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        if !(next.starts_with("block") || next.starts_with("range")) {
            continue;
        }
        let w = w.trim_end_matches(['.', ':']);
        let (digits, mult) = match w.strip_suffix('k') {
            Some(d) => (d, 1000),
            None => (w, 1),
        };
        if let Ok(n) = digits.parse::<u64>()
            && n > 0
        {
            return Some(n * mult);
        }
    }
    None
}

impl Provider {
    /// The logs matching `filter` in `from..=to`, decoded and passed through `check` (the
    /// fleet's test against the fetched blocks); an answer `check` refuses is an invalid response.
    pub async fn logs(
        &self,
        filter: &LogFilter,
        from: u64,
        to: u64,
        check: impl Fn(Vec<FetchedLog>) -> Result<Vec<FetchedLog>, ProviderError>,
        ctx: CallCtx,
    ) -> Result<Vec<FetchedLog>, ProviderError> {
        let obj = filter.to_rpc(from, to);
        let params = |_: usize| {
            let mut p = ArrayParams::new();
            push(&mut p, &obj);
            p
        };
        // Checked inside the call, so a refused answer is recorded as the invalid response it was.
        let decode = |_: usize, raw: &str| check(decode_logs(raw)?);
        let mut out = self.calls(method::LOGS, &[Some(to)], params, decode, ctx).await;
        let r = out.pop().unwrap_or_else(|| Err(ProviderError::Invalid("no answer".into())));
        match &r {
            Ok(_) => self.caps.works(self.id, CapabilityMethod::Logs),
            Err(e) if super::receipts_rpc::unsupported(e) && range_refusal(e, to - from + 1).is_none() => {
                self.caps.lacks(self.id, CapabilityMethod::Logs, &e.to_string());
            }
            Err(_) => {}
        }
        r
    }

    /// Whether `eth_getLogs` is worth asking here (not known to be missing).
    pub fn logs_supported(&self) -> bool {
        self.caps.worth_trying(CapabilityMethod::Logs)
    }

    /// The widest range to ask this provider for, within `wanted` blocks.
    pub fn logs_span(&self, wanted: u64) -> u64 {
        self.caps.logs_span(wanted)
    }

    /// The provider refused a range: it accepts at most `max` blocks (`why`: its words).
    pub fn learn_logs_range(&self, max: u64, why: &str) {
        self.caps.logs_range(self.id, max, why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i32, message: &str) -> ProviderError {
        ProviderError::Rpc { code, message: message.into(), retry_after: None }
    }

    #[test]
    fn range_refusals_and_their_hints() {
        let alchemy = rpc(
            -32602,
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response. Based on your parameters, this block range should work: [0x1, 0x64]",
        );
        assert_eq!(range_refusal(&alchemy, 1000), Some(100));
        let infura = rpc(-32005, "query returned more than 10000 results. Try with this block range [0x10, 0x2F].");
        assert_eq!(range_refusal(&infura, 1000), Some(32));
        assert_eq!(range_refusal(&rpc(-32000, "block range is too wide"), 1000), Some(500));
        assert_eq!(range_refusal(&rpc(-32000, "eth_getLogs is limited to a 10000 range"), 20_000), Some(10_000));
        assert_eq!(range_refusal(&rpc(-32600, "exceed maximum block range: 500"), 1000), Some(500));
        assert_eq!(range_refusal(&rpc(-32000, "max 250 blocks per request"), 1000), Some(250));
        assert_eq!(infura.outcome(), crate::model::Outcome::RpcError, "a range refusal is no throttle");
        assert_eq!(range_refusal(&rpc(-32005, "daily request count exceeded, request rate limited"), 1000), None);
        assert_eq!(range_refusal(&rpc(-32000, "header not found"), 1000), None);
        assert_eq!(range_refusal(&rpc(-32005, "block range too large"), 1), None, "a single block cannot be split");
        assert_eq!(range_refusal(&ProviderError::TooLarge(1 << 20), 64), Some(32));
    }

    #[test]
    fn logs_decode_strictly() {
        let ok = r#"[{"address":"0x00000000000000000000000000000000000000aa","topics":["0x1111111111111111111111111111111111111111111111111111111111111111"],"data":"0x","blockNumber":"0x5","blockHash":"0x2222222222222222222222222222222222222222222222222222222222222222","transactionIndex":"0x0","transactionHash":"0x3333333333333333333333333333333333333333333333333333333333333333","logIndex":"0x2","removed":false}]"#;
        let got = decode_logs(ok).expect("decodes");
        assert_eq!((got[0].block_number, got[0].log.log_index), (5, 2));
        assert!(decode_logs(&ok.replace("\"removed\":false", "\"removed\":true")).is_err());
        assert!(decode_logs(&ok.replace(",\"logIndex\":\"0x2\"", "")).is_err(), "pending logs lack positions");
        assert!(decode_logs(&ok.replace("0x5", "5")).is_err());
        assert!(decode_logs("{}").is_err());
    }
}
