//! Decoding and verifying a block's receipts: strict hex, every receipt and log naming the block
//! it was asked for, transaction positions and hashes as the block has them, log indexes in
//! sequence, and the receipts trie root recomputed (alloy's receipt encoding and trie) and
//! compared with the header's `receiptsRoot`.

use alloy_consensus::{Eip658Value, Receipt as AlloyReceipt, ReceiptWithBloom};
use alloy_primitives::{B256, Bloom, LogData};
use serde::Deserialize;

use super::logs::RpcLog;
use super::wire::{Reject, address, bytes, fixed, hash, quantity, quantity256};
use crate::model::{BlockReceipts, Log, ProviderId, Receipt};

/// What the receipts must agree with: the block they were asked for.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptsOf<'a> {
    pub number: u64,
    pub hash: B256,
    pub receipts_root: B256,
    pub tx_count: u32,
    /// The block's transaction hashes, when its transactions were fetched.
    pub tx_hashes: Option<&'a [B256]>,
    /// Keep the receipts' JSON (compressed) with them, for `/rpc`.
    pub keep_raw: bool,
}

impl<'a> ReceiptsOf<'a> {
    /// What `b`'s receipts must agree with; `hashes` are its transaction hashes (used when its
    /// transactions were fetched); the JSON is kept when the block's is.
    pub fn of(b: &crate::model::Block, hashes: &'a [B256]) -> Self {
        Self {
            number: b.number,
            hash: b.hash,
            receipts_root: b.receipts_root,
            tx_count: b.tx_count,
            tx_hashes: b.full_txs.then_some(hashes),
            keep_raw: b.raw.is_some(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcReceipt<'a> {
    #[serde(borrow)]
    transaction_hash: &'a str,
    transaction_index: &'a str,
    block_hash: Option<&'a str>,
    block_number: Option<&'a str>,
    cumulative_gas_used: &'a str,
    gas_used: &'a str,
    effective_gas_price: Option<&'a str>,
    contract_address: Option<&'a str>,
    // Each log kept as sent (for `RawLogs`), then decoded on its own.
    logs: Vec<&'a serde_json::value::RawValue>,
    logs_bloom: &'a str,
    #[serde(rename = "type")]
    tx_type: Option<&'a str>,
    status: Option<&'a str>,
    root: Option<&'a str>,
    blob_gas_used: Option<&'a str>,
    blob_gas_price: Option<&'a str>,
}

fn bad(i: usize, why: impl Into<String>) -> Reject {
    Reject::Receipt { index: i, why: why.into() }
}

/// Decode `eth_getBlockReceipts`' answer for the block `of` and verify it.
pub fn decode_block_receipts(raw: &str, of: ReceiptsOf<'_>, provider: ProviderId) -> Result<BlockReceipts, Reject> {
    let list: Vec<RpcReceipt<'_>> =
        serde_json::from_str(raw).map_err(|e| Reject::NotAnObject(format!("receipts: {e}")))?;
    let mut out = assemble(&list, of, provider)?;
    if of.keep_raw {
        out.raw = Some(crate::rawjson::RawJson::compress(raw));
    }
    Ok(out)
}

/// Verify receipts fetched one by one with `eth_getTransactionReceipt` (`raws[i]` is
/// transaction `i`'s) as the block's receipts.
pub fn assemble_receipts(raws: &[&str], of: ReceiptsOf<'_>, provider: ProviderId) -> Result<BlockReceipts, Reject> {
    let mut list = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let r: RpcReceipt<'_> = serde_json::from_str(raw).map_err(|e| bad(i, format!("not a receipt: {e}")))?;
        list.push(r);
    }
    let mut out = assemble(&list, of, provider)?;
    if of.keep_raw {
        // The array eth_getBlockReceipts would have given: the receipts in order.
        out.raw = Some(crate::rawjson::RawJson::compress(&format!("[{}]", raws.join(","))));
    }
    Ok(out)
}

fn assemble(list: &[RpcReceipt<'_>], of: ReceiptsOf<'_>, provider: ProviderId) -> Result<BlockReceipts, Reject> {
    if list.len() != of.tx_count as usize {
        return Err(Reject::ReceiptCount { want: of.tx_count, got: list.len() });
    }
    let mut receipts = Vec::with_capacity(list.len());
    let mut next_log = 0u32;
    for (i, r) in list.iter().enumerate() {
        receipts.push(receipt(i, r, of, &mut next_log)?);
    }
    let root_verified = verify_root(&receipts, of.receipts_root)?;
    let raw_logs = if of.keep_raw { Some(raw_logs(list, &receipts)?) } else { None };
    Ok(BlockReceipts { receipts, root_verified, provider, raw: None, raw_logs })
}

/// The block's logs as sent, beside the address and topics they were decoded to.
fn raw_logs(list: &[RpcReceipt<'_>], receipts: &[Receipt]) -> Result<crate::rawlogs::RawLogs, Reject> {
    let pairs = list.iter().zip(receipts).flat_map(|(r, rc)| r.logs.iter().zip(&rc.logs));
    crate::rawlogs::RawLogs::build(pairs.map(|(raw, l)| (&l.inner.address.0.0, l.inner.data.topics(), raw.get())))
        .map_err(|e| Reject::NotAnObject(format!("logs: {e}")))
}

/// One receipt, checked against its block and position; `next_log` is the block's next log index.
fn receipt(i: usize, r: &RpcReceipt<'_>, of: ReceiptsOf<'_>, next_log: &mut u32) -> Result<Receipt, Reject> {
    let e = |x: Reject| bad(i, x.to_string());
    let index = quantity("transactionIndex", r.transaction_index).map_err(e)?;
    if index != i as u64 {
        return Err(bad(i, format!("transactionIndex {index} at position {i}")));
    }
    let tx_hash = hash("transactionHash", r.transaction_hash).map_err(e)?;
    if let Some(hashes) = of.tx_hashes
        && hashes.get(i) != Some(&tx_hash)
    {
        return Err(bad(i, format!("transactionHash {tx_hash} is not the block's transaction {i}")));
    }
    same_block(r.block_hash, r.block_number, of).map_err(|why| bad(i, why))?;
    let (status, post_state) = match (r.status, r.root) {
        (Some(s), _) => match quantity("status", s).map_err(e)? {
            0 => (Some(false), None),
            1 => (Some(true), None),
            other => return Err(bad(i, format!("status {other} is neither 0 nor 1"))),
        },
        (None, Some(root)) => (None, Some(hash("root", root).map_err(e)?)),
        (None, None) => return Err(bad(i, "neither status nor root (pre-Byzantium post-state)")),
    };
    let tx_type = match r.tx_type {
        Some(t) => u8::try_from(quantity("type", t).map_err(e)?).map_err(|_| bad(i, "type above 255"))?,
        None => 0,
    };
    let mut logs = Vec::with_capacity(r.logs.len());
    for (k, raw) in r.logs.iter().enumerate() {
        let l: RpcLog<'_> = serde_json::from_str(raw.get()).map_err(|e| bad(i, format!("log {k}: {e}")))?;
        logs.push(log(i, k, &l, of, tx_hash, next_log)?);
    }
    let opt = |k: &'static str, v: Option<&str>| v.map(|s| quantity(k, s)).transpose().map_err(e);
    let opt256 = |k: &'static str, v: Option<&str>| v.map(|s| quantity256(k, s)).transpose().map_err(e);
    Ok(Receipt {
        tx_index: u32::try_from(i).map_err(|_| bad(i, "too many receipts"))?,
        tx_hash,
        tx_type,
        status,
        post_state,
        gas_used: quantity("gasUsed", r.gas_used).map_err(e)?,
        cumulative_gas_used: quantity("cumulativeGasUsed", r.cumulative_gas_used).map_err(e)?,
        effective_gas_price: opt256("effectiveGasPrice", r.effective_gas_price)?,
        contract_address: r.contract_address.map(|a| address("contractAddress", a)).transpose().map_err(e)?,
        blob_gas_used: opt("blobGasUsed", r.blob_gas_used)?,
        blob_gas_price: opt256("blobGasPrice", r.blob_gas_price)?,
        logs_bloom: Bloom::from(fixed::<256>("logsBloom", r.logs_bloom).map_err(e)?),
        log_count: u32::try_from(logs.len()).map_err(|_| bad(i, "too many logs"))?,
        logs,
    })
}

/// A receipt's or log's block fields, when present, must name the block asked for.
fn same_block(block_hash: Option<&str>, block_number: Option<&str>, of: ReceiptsOf<'_>) -> Result<(), String> {
    if let Some(h) = block_hash {
        let h = hash("blockHash", h).map_err(|e| e.to_string())?;
        if h != of.hash {
            return Err(format!("blockHash {h} is not the block's {}", of.hash));
        }
    }
    if let Some(n) = block_number {
        let n = quantity("blockNumber", n).map_err(|e| e.to_string())?;
        if n != of.number {
            return Err(format!("blockNumber {n} is not the block's {}", of.number));
        }
    }
    Ok(())
}

fn log(
    i: usize,
    k: usize,
    l: &RpcLog<'_>,
    of: ReceiptsOf<'_>,
    tx_hash: B256,
    next_log: &mut u32,
) -> Result<Log, Reject> {
    let e = |x: Reject| bad(i, format!("log {k}: {x}"));
    if l.removed {
        return Err(bad(i, format!("log {k} is marked removed")));
    }
    let expected = *next_log;
    if let Some(li) = l.log_index {
        let li = quantity("logIndex", li).map_err(e)?;
        if li != u64::from(expected) {
            return Err(Reject::LogIndex { want: expected, got: li });
        }
    }
    *next_log = expected.checked_add(1).ok_or_else(|| bad(i, "too many logs"))?;
    if let Some(ti) = l.transaction_index {
        let ti = quantity("transactionIndex", ti).map_err(e)?;
        if ti != i as u64 {
            return Err(bad(i, format!("log {k} names transaction {ti}")));
        }
    }
    if let Some(th) = l.transaction_hash {
        let th = hash("transactionHash", th).map_err(e)?;
        if th != tx_hash {
            return Err(bad(i, format!("log {k} names transaction {th}")));
        }
    }
    same_block(l.block_hash, l.block_number, of).map_err(|why| bad(i, format!("log {k}: {why}")))?;
    if l.topics.len() > 4 {
        return Err(bad(i, format!("log {k} has {} topics (at most 4)", l.topics.len())));
    }
    let topics = l.topics.iter().map(|t| hash("topics", t)).collect::<Result<Vec<_>, _>>().map_err(e)?;
    let data = LogData::new_unchecked(topics, bytes("data", l.data).map_err(e)?);
    let inner = alloy_primitives::Log { address: address("address", l.address).map_err(e)?, data };
    let tx_index = u32::try_from(i).map_err(|_| bad(i, "too many receipts"))?;
    Ok(Log { log_index: expected, tx_index, tx_hash, inner })
}

/// Transaction types whose receipt encoding this build knows (legacy, EIP-2930, -1559, -4844,
/// -7702). Others (an L2's deposit receipts) leave the root unchecked, not refused.
fn known_type(t: u8) -> bool {
    t <= 4
}

/// Recompute the receipts trie root and compare it with the header's. `Ok(Some(false))` when a
/// receipt type is unknown (not evidence of forgery).
fn verify_root(receipts: &[Receipt], claimed: B256) -> Result<Option<bool>, Reject> {
    if receipts.iter().any(|r| !known_type(r.tx_type)) {
        return Ok(Some(false));
    }
    let computed = receipts_root(receipts);
    if computed != claimed {
        return Err(Reject::ReceiptsRoot { computed, claimed });
    }
    Ok(Some(true))
}

/// The receipts trie root of a block's receipts. EIP-2718: a typed receipt is its type byte,
/// then the RLP of (status, gas, bloom, logs) — what alloy's `ReceiptEnvelope::encode_2718`
/// writes, here over borrowed logs.
pub fn receipts_root(receipts: &[Receipt]) -> B256 {
    let encoded: Vec<(u8, ReceiptWithBloom<AlloyReceipt<&alloy_primitives::Log>>)> =
        receipts.iter().map(|r| (r.tx_type, with_bloom(r))).collect();
    alloy_consensus::proofs::ordered_trie_root_with_encoder(&encoded, |(ty, r), buf| {
        if *ty != 0 {
            buf.push(*ty);
        }
        alloy_rlp::Encodable::encode(r, buf);
    })
}

fn with_bloom(r: &Receipt) -> ReceiptWithBloom<AlloyReceipt<&alloy_primitives::Log>> {
    let status = match (r.status, r.post_state) {
        (Some(ok), _) => Eip658Value::Eip658(ok),
        (None, Some(root)) => Eip658Value::PostState(root),
        (None, None) => Eip658Value::Eip658(false),
    };
    let receipt = AlloyReceipt {
        status,
        cumulative_gas_used: r.cumulative_gas_used,
        logs: r.logs.iter().map(|l| &l.inner).collect(),
    };
    ReceiptWithBloom { receipt, logs_bloom: r.logs_bloom }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
    const TX0: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

    fn receipt_json(status: &str, logs: &str, bloom: &str) -> String {
        format!(
            r#"{{"transactionHash":"{TX0}","transactionIndex":"0x0","blockHash":"{BLOCK}","blockNumber":"0x5",
            "cumulativeGasUsed":"0x5208","gasUsed":"0x5208","effectiveGasPrice":"0x3b9aca00","contractAddress":null,
            "logs":[{logs}],"logsBloom":"{bloom}","type":"0x2",{status}}}"#
        )
    }

    fn log_json(index: u32) -> String {
        format!(
            r#"{{"address":"0x{a}","topics":["{TX0}"],"data":"0x01","logIndex":"{index:#x}","transactionIndex":"0x0",
            "transactionHash":"{TX0}","blockHash":"{BLOCK}","blockNumber":"0x5","removed":false}}"#,
            a = "aa".repeat(20)
        )
    }

    /// The root these receipts hash to, computed the same way (alloy), so a test can build a
    /// consistent "header".
    fn root_of(raw: &str) -> B256 {
        let of = ReceiptsOf {
            number: 5,
            hash: B256::repeat_byte(0x11),
            receipts_root: B256::ZERO,
            tx_count: 1,
            tx_hashes: None,
            keep_raw: false,
        };
        match decode_block_receipts(raw, of, ProviderId(0)) {
            Err(Reject::ReceiptsRoot { computed, .. }) => computed,
            other => panic!("expected a root mismatch, got {other:?}"),
        }
    }

    #[test]
    fn receipts_verify_against_the_root_and_reject_a_dropped_or_forged_log() {
        let bloom = format!("0x{}", "00".repeat(256));
        let raw = format!("[{}]", receipt_json(r#""status":"0x1""#, &[log_json(0), log_json(1)].join(","), &bloom));
        let root = root_of(&raw);
        let tx0 = [B256::repeat_byte(0x22)];
        let of = ReceiptsOf {
            number: 5,
            hash: B256::repeat_byte(0x11),
            receipts_root: root,
            tx_count: 1,
            tx_hashes: Some(&tx0),
            keep_raw: true,
        };
        let got = decode_block_receipts(&raw, of, ProviderId(3)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.root_verified, Some(true));
        assert_eq!(got.raw.as_ref().map(|r| r.text().unwrap()), Some(raw.clone()));
        assert_eq!(got.receipts[0].logs.len(), 2);
        assert_eq!((got.receipts[0].status, got.receipts[0].gas_used), (Some(true), 21_000));
        // a dropped log changes the root
        let dropped = format!("[{}]", receipt_json(r#""status":"0x1""#, &log_json(0), &bloom));
        assert!(matches!(decode_block_receipts(&dropped, of, ProviderId(3)), Err(Reject::ReceiptsRoot { .. })));
        // a forged log data byte changes the root
        let forged = raw.replacen(r#""data":"0x01""#, r#""data":"0x02""#, 1);
        assert!(matches!(decode_block_receipts(&forged, of, ProviderId(3)), Err(Reject::ReceiptsRoot { .. })));
        // a log index out of sequence, a receipt of another block, a truncated list
        let skipped = format!("[{}]", receipt_json(r#""status":"0x1""#, &[log_json(0), log_json(2)].join(","), &bloom));
        assert!(matches!(
            decode_block_receipts(&skipped, of, ProviderId(3)),
            Err(Reject::LogIndex { want: 1, got: 2 })
        ));
        let other = raw.replace(BLOCK, "0x3333333333333333333333333333333333333333333333333333333333333333");
        assert!(matches!(decode_block_receipts(&other, of, ProviderId(3)), Err(Reject::Receipt { .. })));
        assert!(matches!(
            decode_block_receipts("[]", of, ProviderId(3)),
            Err(Reject::ReceiptCount { want: 1, got: 0 })
        ));
    }

    #[test]
    fn pre_byzantium_receipts_carry_a_post_state_root() {
        let bloom = format!("0x{}", "00".repeat(256));
        let post = format!(r#""root":"{BLOCK}""#);
        let raw = format!("[{}]", receipt_json(&post, "", &bloom).replace(r#""type":"0x2","#, ""));
        let root = root_of(&raw);
        let of = ReceiptsOf {
            number: 5,
            hash: B256::repeat_byte(0x11),
            receipts_root: root,
            tx_count: 1,
            tx_hashes: None,
            keep_raw: false,
        };
        let got = decode_block_receipts(&raw, of, ProviderId(0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.receipts[0].status, got.receipts[0].post_state), (None, Some(B256::repeat_byte(0x11))));
        let neither = raw.replace(&post, r#""x":"0x0""#);
        let e = decode_block_receipts(&neither, of, ProviderId(0)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("pre-Byzantium"), "{e}");
    }
}
