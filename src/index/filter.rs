//! Log filters as `eth_getLogs` has them — any of some addresses, and per topic position any of
//! some values — and a selection of several: which logs are stored, what `eth_getLogs` is asked
//! for, and whether a header's logs bloom allows a block to hold a selected log.

use alloy_primitives::{Address, B256, Bloom, BloomInput, keccak256};
use serde_json::{Value, json};

use super::IndexError;

/// One filter: a log matches when its address is one of `addresses` (any when empty) and, for
/// each position `i`, its topic `i` is one of `topics[i]` (any when empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogFilter {
    pub addresses: Vec<Address>,
    pub topics: [Vec<B256>; 4],
}

impl LogFilter {
    /// Parse addresses (0x + 40 hex) and topics (0x + 64 hex; in position 0 an event signature
    /// such as `Transfer(address,address,uint256)` is hashed). `what` names the filter in errors.
    pub fn parse(what: &str, addresses: &[String], topics: [&[String]; 4]) -> Result<Self, IndexError> {
        let bad = |why: String| IndexError::Filter(format!("{what}: {why}"));
        let mut f = Self::default();
        for a in addresses {
            f.addresses.push(a.trim().parse::<Address>().map_err(|e| bad(format!("address {a:?}: {e}")))?);
        }
        for (i, list) in topics.iter().enumerate() {
            for t in *list {
                let t = t.trim();
                let v = if i == 0 && t.contains('(') {
                    keccak256(signature_text(t).map_err(|e| bad(format!("topic0 {t:?}: {e}")))?)
                } else {
                    t.parse::<B256>().map_err(|e| bad(format!("topic{i} {t:?} (0x and 64 hex digits): {e}")))?
                };
                f.topics[i].push(v);
            }
        }
        Ok(f)
    }

    /// Whether a log with this address and these topics matches.
    pub fn matches(&self, address: &Address, topics: &[B256]) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(address) {
            return false;
        }
        self.topics
            .iter()
            .enumerate()
            .all(|(i, alts)| alts.is_empty() || topics.get(i).is_some_and(|t| alts.contains(t)))
    }

    /// Whether a block with this logs bloom may hold a matching log (false: it certainly does not).
    pub fn bloom_may_match(&self, bloom: &Bloom) -> bool {
        let any = |items: &mut dyn Iterator<Item = &[u8]>| {
            let mut seen = false;
            for b in items {
                seen = true;
                if bloom.contains_input(BloomInput::Raw(b)) {
                    return true;
                }
            }
            !seen
        };
        any(&mut self.addresses.iter().map(|a| a.as_slice()))
            && self.topics.iter().all(|alts| any(&mut alts.iter().map(|t| t.as_slice())))
    }

    /// The `eth_getLogs` parameter object for `from..=to`.
    pub fn to_rpc(&self, from: u64, to: u64) -> Value {
        let mut o = json!({ "fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}") });
        match self.addresses.as_slice() {
            [] => {}
            [one] => o["address"] = json!(one.to_string().to_ascii_lowercase()),
            many => o["address"] = json!(many.iter().map(|a| a.to_string().to_ascii_lowercase()).collect::<Vec<_>>()),
        }
        let last = self.topics.iter().rposition(|t| !t.is_empty());
        if let Some(last) = last {
            let topics: Vec<Value> = self.topics[..=last]
                .iter()
                .map(|alts| match alts.as_slice() {
                    [] => Value::Null,
                    [one] => json!(one.to_string()),
                    many => json!(many.iter().map(ToString::to_string).collect::<Vec<_>>()),
                })
                .collect();
            o["topics"] = json!(topics);
        }
        o
    }
}

/// `Transfer(address,address,uint256)` from either that or `event Transfer(address indexed
/// from, …)`: the canonical text whose keccak is topic 0.
fn signature_text(s: &str) -> Result<String, String> {
    let s = s.trim().strip_prefix("event ").unwrap_or(s.trim());
    let ev = alloy_json_abi::Event::parse(&format!("event {s}")).map_err(|e| e.to_string())?;
    Ok(ev.signature())
}

/// The logs to keep: those matching any filter, or every log when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSelection {
    filters: Vec<LogFilter>,
}

impl LogSelection {
    /// A selection of these filters (none: every log).
    pub fn new(filters: Vec<LogFilter>) -> Self {
        Self { filters }
    }

    /// Every log.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn is_all(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn filters(&self) -> &[LogFilter] {
        &self.filters
    }

    pub fn selects(&self, address: &Address, topics: &[B256]) -> bool {
        self.is_all() || self.filters.iter().any(|f| f.matches(address, topics))
    }

    /// Whether a block with this bloom may hold a selected log.
    pub fn bloom_may_match(&self, bloom: &Bloom) -> bool {
        self.is_all() || self.filters.iter().any(|f| f.bloom_may_match(bloom))
    }

    /// A stable text naming this selection (what `blocks.logs_selection` is compared by), the
    /// same whatever the order of filters and of their values.
    pub fn fingerprint(&self) -> String {
        let mut parts: Vec<String> = self
            .filters
            .iter()
            .map(|f| {
                let mut a: Vec<String> = f.addresses.iter().map(|x| x.to_string().to_ascii_lowercase()).collect();
                a.sort();
                let t: Vec<String> = f
                    .topics
                    .iter()
                    .map(|alts| {
                        let mut v: Vec<String> = alts.iter().map(ToString::to_string).collect();
                        v.sort();
                        v.join("|")
                    })
                    .collect();
                format!("{}/{}", a.join("|"), t.join("/"))
            })
            .collect();
        parts.sort();
        parts.dedup();
        if parts.is_empty() { "*".into() } else { parts.join(";") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_signature_in_topic0_is_hashed() {
        let a = LogFilter::parse("f", &[], [&s(&["Transfer(address,address,uint256)"]), &[], &[], &[]]).expect("parse");
        let b = LogFilter::parse(
            "f",
            &[],
            [&s(&["event Transfer(address indexed from, address indexed to, uint256 value)"]), &[], &[], &[]],
        )
        .expect("parse");
        let c = LogFilter::parse("f", &[], [&s(&[TRANSFER]), &[], &[], &[]]).expect("parse");
        assert_eq!(a, c);
        assert_eq!(b, c);
        let err = LogFilter::parse("[[index.logs]] 2", &s(&["0x12"]), [&[], &[], &[], &[]]).expect_err("short");
        assert!(err.to_string().contains("[[index.logs]] 2: address \"0x12\""), "{err}");
    }

    #[test]
    fn matching_and_the_bloom_agree() {
        let token: Address = "0x00000000000000000000000000000000000000aa".parse().expect("addr");
        let other: Address = "0x00000000000000000000000000000000000000bb".parse().expect("addr");
        let t0: B256 = TRANSFER.parse().expect("topic");
        let f = LogFilter { addresses: vec![token], topics: [vec![t0], vec![], vec![], vec![]] };
        assert!(f.matches(&token, &[t0, B256::ZERO]));
        assert!(!f.matches(&other, &[t0]));
        assert!(!f.matches(&token, &[]));
        let mut bloom = Bloom::default();
        bloom.accrue(BloomInput::Raw(token.as_slice()));
        assert!(!f.bloom_may_match(&bloom), "topic not in the bloom");
        bloom.accrue(BloomInput::Raw(t0.as_slice()));
        assert!(f.bloom_may_match(&bloom));
        assert!(LogSelection::all().bloom_may_match(&Bloom::default()));
        let rpc = f.to_rpc(1, 16);
        assert_eq!(rpc["fromBlock"], "0x1");
        assert_eq!(rpc["address"], "0x00000000000000000000000000000000000000aa");
        assert_eq!(rpc["topics"], json!([TRANSFER]));
    }

    #[test]
    fn the_fingerprint_ignores_order() {
        let a: Address = "0x00000000000000000000000000000000000000aa".parse().expect("addr");
        let b: Address = "0x00000000000000000000000000000000000000bb".parse().expect("addr");
        let f1 = LogFilter { addresses: vec![a, b], ..LogFilter::default() };
        let f2 = LogFilter { addresses: vec![b, a], ..LogFilter::default() };
        let g = LogFilter { topics: [vec![B256::ZERO], vec![], vec![], vec![]], ..LogFilter::default() };
        assert_eq!(LogSelection::new(vec![f1, g.clone()]).fingerprint(), LogSelection::new(vec![g, f2]).fingerprint());
        assert_eq!(LogSelection::all().fingerprint(), "*");
    }
}
