//! Decoding provider JSON into validated blocks: strict hex, number as requested, consistent
//! transactions, and the header hash recomputed from the header fields.

use std::collections::HashMap;

use alloy_consensus::Header;
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, U256};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::model::{Block, Head, ProviderId, Transaction};

/// Why a response was refused. Every variant names the field or the rule that failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Reject {
    #[error("result is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` is malformed: {why}")]
    Malformed { field: &'static str, why: String },
    #[error("block number {got} is not the {want} that was asked for")]
    WrongNumber { want: u64, got: u64 },
    #[error("block hash {got} is not the {want} that was asked for")]
    WrongHash { want: B256, got: B256 },
    #[error("header hash mismatch: fields hash to {computed}, provider says {claimed}")]
    HashMismatch { computed: B256, claimed: B256 },
    #[error("transaction {index}: {why}")]
    Transaction { index: usize, why: String },
    #[error("value {0} exceeds the range this store accepts")]
    TooBig(&'static str),
    #[error("receipt {index}: {why}")]
    Receipt { index: usize, why: String },
    #[error("{got} receipts for a block of {want} transactions")]
    ReceiptCount { want: u32, got: usize },
    #[error("log index {got} where {want} was next: a log is missing or out of order")]
    LogIndex { want: u32, got: u64 },
    #[error("receipts root mismatch: receipts hash to {computed}, the header says {claimed}")]
    ReceiptsRoot { computed: B256, claimed: B256 },
    #[error("log {index}: {why}")]
    Log { index: usize, why: String },
    #[error("log {log_index} of block {number} is not in the header's logs bloom ({what}): forged")]
    NotInBloom { number: u64, log_index: u32, what: String },
    #[error(
        "eth_getLogs answers for block {number} differ from its verified receipts, which hold {held} selected logs"
    )]
    LogsWithheld { number: u64, held: usize },
}

/// Headers stored unverified because they carried unknown fields (process-wide count).
pub static UNVERIFIED_HEADERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn malformed(field: &'static str, why: impl Into<String>) -> Reject {
    Reject::Malformed { field, why: why.into() }
}

fn strip0x<'a>(field: &'static str, s: &'a str) -> Result<&'a str, Reject> {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| malformed(field, format!("{s:?} has no 0x prefix")))
}

/// A hex quantity that must fit in u64 and in SQLite's i64. Leading zeros and upper case are
/// tolerated (they name the same number); empty digits are not.
pub fn quantity(field: &'static str, s: &str) -> Result<u64, Reject> {
    let digits = strip0x(field, s)?;
    if digits.is_empty() || digits.len() > 64 {
        return Err(malformed(field, format!("{s:?} is not a quantity")));
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 16 {
        return Err(Reject::TooBig(field));
    }
    let v = if trimmed.is_empty() {
        0
    } else {
        u64::from_str_radix(trimmed, 16).map_err(|e| malformed(field, format!("{s:?}: {e}")))?
    };
    if v > i64::MAX as u64 {
        return Err(Reject::TooBig(field));
    }
    Ok(v)
}

/// A hex quantity of up to 256 bits (wei amounts).
pub fn quantity256(field: &'static str, s: &str) -> Result<U256, Reject> {
    let digits = strip0x(field, s)?;
    if digits.is_empty() || digits.len() > 64 {
        return Err(malformed(field, format!("{s:?} is not a 256-bit quantity")));
    }
    U256::from_str_radix(digits, 16).map_err(|e| malformed(field, format!("{s:?}: {e}")))
}

pub(super) fn fixed<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], Reject> {
    let digits = strip0x(field, s)?;
    if digits.len() != N * 2 {
        return Err(malformed(field, format!("expected {N} bytes, got {} hex digits", digits.len())));
    }
    let mut out = [0u8; N];
    alloy_primitives::hex::decode_to_slice(digits, &mut out).map_err(|e| malformed(field, e.to_string()))?;
    Ok(out)
}

/// A 32-byte hash.
pub fn hash(field: &'static str, s: &str) -> Result<B256, Reject> {
    fixed::<32>(field, s).map(B256::from)
}

pub(super) fn address(field: &'static str, s: &str) -> Result<Address, Reject> {
    fixed::<20>(field, s).map(Address::from)
}

pub(super) fn bytes(field: &'static str, s: &str) -> Result<Bytes, Reject> {
    let digits = strip0x(field, s)?;
    alloy_primitives::hex::decode(digits).map(Bytes::from).map_err(|e| malformed(field, e.to_string()))
}

/// Header keys this decoder understands. A block with any other key is stored unverified,
/// because that key may be part of the header hash (a newer fork) and we cannot recompute it.
const KNOWN_KEYS: &[&str] = &[
    "number",
    "hash",
    "parentHash",
    "sha3Uncles",
    "miner",
    "stateRoot",
    "transactionsRoot",
    "receiptsRoot",
    "logsBloom",
    "difficulty",
    "gasLimit",
    "gasUsed",
    "timestamp",
    "extraData",
    "mixHash",
    "nonce",
    "baseFeePerGas",
    "withdrawalsRoot",
    "blobGasUsed",
    "excessBlobGas",
    "parentBeaconBlockRoot",
    "requestsHash",
    "size",
    "totalDifficulty",
    "transactions",
    "uncles",
    "withdrawals",
];

struct Fields<'a>(HashMap<&'a str, &'a RawValue>);

/// The `transactions` member of a block: the transactions themselves, or only how many there
/// are when they were asked for as hashes.
enum TxList<'a> {
    Full(Vec<RpcTx<'a>>),
    Count(usize),
}

/// How an object's `transactions` member is read.
#[derive(Clone, Copy)]
enum TxMode {
    /// Like any other member: kept as raw text (a head, where it is not looked at).
    Raw,
    /// Decoded as full transactions.
    Full,
    /// Counted (transaction hashes).
    Count,
}

/// Errors from inside `transactions` start with this, so they can be reported against it.
const TX_ERROR_PREFIX: &str = "transactions: ";

impl<'de> serde::de::DeserializeSeed<'de> for TxMode {
    type Value = TxList<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let list = if matches!(self, Self::Full) {
            Vec::<RpcTx<'de>>::deserialize(d).map(TxList::Full)
        } else {
            Vec::<serde::de::IgnoredAny>::deserialize(d).map(|v| TxList::Count(v.len()))
        };
        list.map_err(|e| serde::de::Error::custom(format!("{TX_ERROR_PREFIX}{e}")))
    }
}

/// A JSON object read into a map of raw members that refuses duplicate keys
/// (`{"number":"0x1","number":"0x2"}` is ambiguous, and different parsers resolve it
/// differently, so it is rejected outright), with `transactions` decoded in the same pass unless
/// the mode is `Raw` (it is most of a full block; reading it as a raw value first meant scanning
/// it twice).
struct ObjectMap<'a> {
    fields: HashMap<&'a str, &'a RawValue>,
    transactions: Option<TxList<'a>>,
}

struct ObjectSeed(TxMode);

impl<'de> serde::de::DeserializeSeed<'de> for ObjectSeed {
    type Value = ObjectMap<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ObjectSeed {
    type Value = ObjectMap<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut fields = HashMap::with_capacity(32);
        let mut transactions = None;
        while let Some(k) = map.next_key::<&'de str>()? {
            let duplicate = if k == "transactions" && !matches!(self.0, TxMode::Raw) {
                transactions.replace(map.next_value_seed(self.0)?).is_some()
            } else {
                fields.insert(k, map.next_value::<&'de RawValue>()?).is_some()
            };
            if duplicate {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
        }
        Ok(ObjectMap { fields, transactions })
    }
}

impl<'a> Fields<'a> {
    fn parse(raw: &'a str) -> Result<Self, Reject> {
        Self::parse_with(raw, TxMode::Raw).map(|(f, _)| f)
    }

    /// A block object and its `transactions` member, in one pass over the text.
    fn parse_block(raw: &'a str, full: bool) -> Result<(Self, Option<TxList<'a>>), Reject> {
        Self::parse_with(raw, if full { TxMode::Full } else { TxMode::Count })
    }

    fn parse_with(raw: &'a str, mode: TxMode) -> Result<(Self, Option<TxList<'a>>), Reject> {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_str(raw);
        let parsed = ObjectSeed(mode).deserialize(&mut de).and_then(|m| de.end().map(|()| m));
        match parsed {
            Ok(m) => Ok((Self(m.fields), m.transactions)),
            Err(e) => {
                let text = truncate(raw, &e);
                Err(match text.strip_prefix(TX_ERROR_PREFIX) {
                    Some(why) => malformed("transactions", why),
                    None => Reject::NotAnObject(text),
                })
            }
        }
    }

    fn opt_str(&self, key: &'static str) -> Result<Option<&'a str>, Reject> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) if v.get() == "null" => Ok(None),
            Some(v) => serde_json::from_str::<&'a str>(v.get())
                .map(Some)
                .map_err(|_| malformed(key, format!("expected a hex string, got {}", v.get()))),
        }
    }

    fn str(&self, key: &'static str) -> Result<&'a str, Reject> {
        self.opt_str(key)?.ok_or(Reject::Missing(key))
    }

    fn all_known(&self) -> bool {
        self.0.keys().all(|k| KNOWN_KEYS.contains(k))
    }
}

fn truncate(raw: &str, e: &serde_json::Error) -> String {
    let head: String = raw.chars().take(80).collect();
    format!("{e} (starts {head:?})")
}

/// What the caller asked for, so the answer can be checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Number(u64),
    Hash(B256),
}

/// Decoding switches.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    pub full_transactions: bool,
    pub verify_header_hash: bool,
    /// Keep the block's JSON (compressed) with it, for `/rpc`.
    pub keep_raw: bool,
}

/// Decode and validate a block from a provider. `provider` is its source.
pub fn decode_block(raw: &str, want: Want, opts: DecodeOptions, provider: ProviderId) -> Result<Block, Reject> {
    let (f, txs) = Fields::parse_block(raw, opts.full_transactions)?;
    let number = quantity("number", f.str("number")?)?;
    let block_hash = hash("hash", f.str("hash")?)?;
    match want {
        Want::Number(n) if n != number => {
            return Err(Reject::WrongNumber { want: n, got: number });
        }
        Want::Hash(h) if h != block_hash => {
            return Err(Reject::WrongHash { want: h, got: block_hash });
        }
        _ => {}
    }
    let parent_hash = hash("parentHash", f.str("parentHash")?)?;
    let timestamp = quantity("timestamp", f.str("timestamp")?)?;
    let miner = address("miner", f.str("miner")?)?;
    let gas_used = quantity("gasUsed", f.str("gasUsed")?)?;
    let gas_limit = quantity("gasLimit", f.str("gasLimit")?)?;
    let base_fee_per_gas = f.opt_str("baseFeePerGas")?.map(|s| quantity256("baseFeePerGas", s)).transpose()?;
    let state_root = hash("stateRoot", f.str("stateRoot")?)?;
    let transactions_root = hash("transactionsRoot", f.str("transactionsRoot")?)?;
    let receipts_root = hash("receiptsRoot", f.str("receiptsRoot")?)?;
    let size = f.opt_str("size")?.map(|s| quantity("size", s)).transpose()?;
    let logs_bloom = f.opt_str("logsBloom")?.map(|s| fixed::<256>("logsBloom", s)).transpose()?.map(Bloom::from);

    let hash_verified = if !opts.verify_header_hash {
        None
    } else if f.all_known() {
        let header = header_of(&f, number, parent_hash, timestamp, miner, gas_used, gas_limit)?;
        let computed = header.hash_slow();
        if computed != block_hash {
            return Err(Reject::HashMismatch { computed, claimed: block_hash });
        }
        Some(true)
    } else {
        // A field this build does not know (a new fork, a non-standard chain): the hash cannot
        // be recomputed, which is not evidence of forgery. Store it, flagged, and count it.
        UNVERIFIED_HEADERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(number, "header has fields this build does not know; hash not verified");
        Some(false)
    };

    let (tx_count, transactions, full_txs) = match txs.ok_or(Reject::Missing("transactions"))? {
        TxList::Full(list) => {
            let mut txs = Vec::with_capacity(list.len());
            for (i, t) in list.iter().enumerate() {
                txs.push(decode_tx(t, i, number, block_hash).map_err(|why| Reject::Transaction { index: i, why })?);
            }
            (txs.len(), txs, true)
        }
        TxList::Count(n) => (n, Vec::new(), false),
    };
    let tx_count = u32::try_from(tx_count).map_err(|_| Reject::TooBig("transactions"))?;

    Ok(Block {
        number,
        hash: block_hash,
        parent_hash,
        timestamp,
        miner,
        gas_used,
        gas_limit,
        base_fee_per_gas,
        state_root,
        transactions_root,
        receipts_root,
        size,
        tx_count,
        hash_verified,
        full_txs,
        transactions,
        provider,
        logs_bloom,
        receipts: None,
        logs: None,
        decoded: Vec::new(),
        raw: opts.keep_raw.then(|| crate::rawjson::RawJson::compress(raw)),
    })
}

#[allow(clippy::too_many_arguments)]
fn header_of(
    f: &Fields<'_>,
    number: u64,
    parent_hash: B256,
    timestamp: u64,
    miner: Address,
    gas_used: u64,
    gas_limit: u64,
) -> Result<Header, Reject> {
    let opt_hash = |k: &'static str| f.opt_str(k)?.map(|s| hash(k, s)).transpose();
    let opt_q = |k: &'static str| f.opt_str(k)?.map(|s| quantity(k, s)).transpose();
    Ok(Header {
        parent_hash,
        ommers_hash: hash("sha3Uncles", f.str("sha3Uncles")?)?,
        beneficiary: miner,
        state_root: hash("stateRoot", f.str("stateRoot")?)?,
        transactions_root: hash("transactionsRoot", f.str("transactionsRoot")?)?,
        receipts_root: hash("receiptsRoot", f.str("receiptsRoot")?)?,
        logs_bloom: Bloom::from(fixed::<256>("logsBloom", f.str("logsBloom")?)?),
        difficulty: quantity256("difficulty", f.str("difficulty")?)?,
        number,
        gas_limit,
        gas_used,
        timestamp,
        extra_data: bytes("extraData", f.str("extraData")?)?,
        mix_hash: opt_hash("mixHash")?.unwrap_or_default(),
        nonce: f.opt_str("nonce")?.map(|s| fixed::<8>("nonce", s)).transpose()?.map(B64::from).unwrap_or_default(),
        base_fee_per_gas: opt_q("baseFeePerGas")?,
        withdrawals_root: opt_hash("withdrawalsRoot")?,
        blob_gas_used: opt_q("blobGasUsed")?,
        excess_blob_gas: opt_q("excessBlobGas")?,
        parent_beacon_block_root: opt_hash("parentBeaconBlockRoot")?,
        requests_hash: opt_hash("requestsHash")?,
        // Block access lists (EIP-7928) are not in KNOWN_KEYS, so a block that has one is
        // stored unverified rather than reaching this point.
        ..Default::default()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcTx<'a> {
    #[serde(borrow)]
    hash: &'a str,
    from: &'a str,
    to: Option<&'a str>,
    value: &'a str,
    nonce: &'a str,
    gas: &'a str,
    gas_price: Option<&'a str>,
    max_fee_per_gas: Option<&'a str>,
    max_priority_fee_per_gas: Option<&'a str>,
    input: &'a str,
    #[serde(rename = "type")]
    tx_type: Option<&'a str>,
    block_hash: Option<&'a str>,
    block_number: Option<&'a str>,
    transaction_index: Option<&'a str>,
}

fn decode_tx(t: &RpcTx<'_>, position: usize, number: u64, block_hash: B256) -> Result<Transaction, String> {
    let e = |r: Reject| r.to_string();
    if let Some(bh) = t.block_hash {
        let bh = hash("blockHash", bh).map_err(e)?;
        if bh != block_hash {
            return Err(format!("blockHash {bh} is not the block's {block_hash}"));
        }
    }
    if let Some(bn) = t.block_number {
        let bn = quantity("blockNumber", bn).map_err(e)?;
        if bn != number {
            return Err(format!("blockNumber {bn} is not the block's {number}"));
        }
    }
    let index = match t.transaction_index {
        Some(i) => quantity("transactionIndex", i).map_err(e)?,
        None => position as u64,
    };
    if index != position as u64 {
        return Err(format!("transactionIndex {index} at position {position}"));
    }
    let index = u32::try_from(index).map_err(|_| "transactionIndex too large".to_string())?;
    let tx_type = match t.tx_type {
        Some(s) => u8::try_from(quantity("type", s).map_err(e)?).map_err(|_| "type above 255".to_string())?,
        None => 0,
    };
    let opt256 = |k: &'static str, v: Option<&str>| v.map(|s| quantity256(k, s)).transpose().map_err(e);
    Ok(Transaction {
        hash: hash("hash", t.hash).map_err(e)?,
        index,
        from: address("from", t.from).map_err(e)?,
        to: t.to.map(|s| address("to", s)).transpose().map_err(e)?,
        value: quantity256("value", t.value).map_err(e)?,
        nonce: quantity("nonce", t.nonce).map_err(e)?,
        gas: quantity("gas", t.gas).map_err(e)?,
        gas_price: opt256("gasPrice", t.gas_price)?,
        max_fee_per_gas: opt256("maxFeePerGas", t.max_fee_per_gas)?,
        max_priority_fee_per_gas: opt256("maxPriorityFeePerGas", t.max_priority_fee_per_gas)?,
        input: bytes("input", t.input).map_err(e)?,
        tx_type,
    })
}

/// Decode the head from an `eth_getBlockByNumber("latest", false)` result. With `verify`, the
/// header hash is recomputed too (when every field is known), so a forged head is caught
/// before it can move the fleet head.
pub fn decode_head(raw: &str, verify: bool) -> Result<Head, Reject> {
    let f = Fields::parse(raw)?;
    let number = quantity("number", f.str("number")?)?;
    let block_hash = hash("hash", f.str("hash")?)?;
    let parent_hash = hash("parentHash", f.str("parentHash")?)?;
    if verify && f.all_known() {
        let header = header_of(
            &f,
            number,
            parent_hash,
            quantity("timestamp", f.str("timestamp")?)?,
            address("miner", f.str("miner")?)?,
            quantity("gasUsed", f.str("gasUsed")?)?,
            quantity("gasLimit", f.str("gasLimit")?)?,
        )?;
        let computed = header.hash_slow();
        if computed != block_hash {
            return Err(Reject::HashMismatch { computed, claimed: block_hash });
        }
    }
    Ok(Head { number, hash: block_hash, parent_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_strict_about_shape_lenient_about_case() {
        assert_eq!(quantity("n", "0x0"), Ok(0));
        assert_eq!(quantity("n", "0x00ff"), Ok(255));
        assert_eq!(quantity("n", "0XFF"), Ok(255));
        assert!(quantity("n", "0x").is_err());
        assert!(quantity("n", "ff").is_err());
        assert!(quantity("n", "0xzz").is_err());
        assert_eq!(quantity("n", "0x8000000000000000"), Err(Reject::TooBig("n")));
        assert!(hash("h", "0x12").is_err());
        assert_eq!(quantity256("v", "0xde0b6b3a7640000"), Ok(U256::from(10u64.pow(18))));
    }

    fn block_json(txs: &str) -> String {
        let h = format!("\"0x{}\"", "ab".repeat(32));
        format!(
            r#"{{"number":"0x5","hash":{h},"parentHash":{h},"timestamp":"0x1","miner":"0x{a}","gasUsed":"0x0",
            "gasLimit":"0x1","stateRoot":{h},"transactionsRoot":{h},"receiptsRoot":{h},"transactions":{txs}}}"#,
            a = "cd".repeat(20)
        )
    }

    #[test]
    fn transactions_are_read_in_the_same_pass_and_checked() {
        let opts = |full| DecodeOptions { full_transactions: full, verify_header_hash: false, keep_raw: false };
        let h = format!("0x{}", "ab".repeat(32));
        let tx = format!(
            r#"{{"hash":"{h}","from":"0x{a}","to":null,"value":"0x1","nonce":"0x0","gas":"0x5208",
            "input":"0x","blockHash":"{h}","blockNumber":"0x5","transactionIndex":"0x0","v":"0x1"}}"#,
            a = "cd".repeat(20)
        );
        let full = decode_block(&block_json(&format!("[{tx}]")), Want::Number(5), opts(true), ProviderId(0));
        assert_eq!(full.map(|b| (b.tx_count, b.transactions.len(), b.full_txs)), Ok((1, 1, true)));
        let hashes =
            decode_block(&block_json(&format!(r#"["{h}","{h}"]"#)), Want::Number(5), opts(false), ProviderId(0));
        assert_eq!(hashes.map(|b| (b.tx_count, b.transactions.len(), b.full_txs)), Ok((2, 0, false)));
        // hashes where objects were asked for: the member is named
        let e = decode_block(&block_json(&format!(r#"["{h}"]"#)), Want::Number(5), opts(true), ProviderId(0));
        assert!(matches!(e, Err(Reject::Malformed { field: "transactions", .. })), "{e:?}");
        // a second `transactions` member is as ambiguous as any other duplicate
        let twice = block_json("[]").replacen(r#""transactions":[]"#, r#""transactions":[],"transactions":[]"#, 1);
        let e = decode_block(&twice, Want::Number(5), opts(false), ProviderId(0))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("duplicate key"), "{e}");
        let none = block_json("[]").replacen(r#","transactions":[]"#, "", 1);
        assert_eq!(
            decode_block(&none, Want::Number(5), opts(true), ProviderId(0)).err(),
            Some(Reject::Missing("transactions"))
        );
        // trailing bytes after the object are refused, as a whole-document parse would
        let trailing = format!("{} x", block_json("[]"));
        assert!(matches!(
            decode_block(&trailing, Want::Number(5), opts(true), ProviderId(0)),
            Err(Reject::NotAnObject(_))
        ));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(Fields::parse(r#"{"number":"0x1","hash":"0x2"}"#).is_ok());
        let e = Fields::parse(r#"{"number":"0x1","number":"0x2"}"#).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("duplicate key"), "{e}");
    }
}
