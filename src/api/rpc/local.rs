//! Answers from the store: the kept JSON of verified blocks and receipts, served as the node
//! sent it. Anything the store does not hold completely is handed back to be forwarded.

use std::borrow::Cow;

use alloy_primitives::B256;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::envelope::{RpcError, code};
use super::params::{self, BlockId, Tag};
use crate::config::RpcConfig;
use crate::store::{BlockAt, Kept, KeptLogs, LogQuery, Store, StoreError};

/// The heights and chain one request sees (a batch sees one `latest`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Heads {
    pub chain_id: Option<u64>,
    /// The height `latest` names for this request (`None`: ask the fleet).
    pub latest: Option<u64>,
    /// The newest stored height.
    pub stored: Option<u64>,
}

/// The store as one request sees it.
#[derive(Debug)]
pub(super) struct View<'a> {
    pub store: &'a Store,
    pub opts: &'a RpcConfig,
    pub heads: Heads,
}

/// How a call is answered locally.
#[derive(Debug)]
pub(super) enum Local {
    /// The result's JSON text.
    Answer(String),
    /// The store cannot: forward it, pinned to this height if any.
    Forward(Option<u64>),
}

/// The methods answered here when the store can.
pub(super) const METHODS: [&str; 15] = [
    "eth_chainId",
    "net_version",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getBlockTransactionCountByHash",
    "eth_getUncleCountByBlockNumber",
    "eth_getUncleCountByBlockHash",
    "eth_getTransactionByHash",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionReceipt",
    "eth_getBlockReceipts",
    "eth_getLogs",
];

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(code::INTERNAL, format!("stored JSON: {e}"))
}

impl From<StoreError> for RpcError {
    fn from(e: StoreError) -> Self {
        Self::new(code::INTERNAL, format!("store: {e}"))
    }
}

fn hex(n: u64) -> String {
    format!("\"{n:#x}\"")
}

fn arg<'a>(p: &[&'a RawValue], i: usize, what: &str) -> Result<&'a RawValue, RpcError> {
    p.get(i)
        .copied()
        .ok_or_else(|| RpcError::invalid_params(format!("missing value for required argument {i} ({what})")))
}

impl View<'_> {
    /// The height a tag names, if the store can answer for it.
    fn height(&self, t: Tag) -> Result<u64, Miss> {
        match t {
            Tag::Earliest => Ok(0),
            Tag::Latest => self
                .heads
                .latest
                .filter(|l| self.heads.stored.is_some_and(|s| *l <= s))
                .ok_or(Miss::Forward(self.heads.latest)),
            Tag::Number(n) if self.heads.stored.is_some_and(|s| n <= s) => Ok(n),
            Tag::Number(n) => Err(Miss::Forward(Some(n))),
            Tag::Pending | Tag::Safe | Tag::Finalized => Err(Miss::Forward(None)),
        }
    }

    fn at(&self, id: BlockId) -> Result<BlockAt, Miss> {
        match id {
            BlockId::Hash(h) => Ok(BlockAt::Hash(h)),
            BlockId::Tag(t) => self.height(t).map(BlockAt::Number),
        }
    }

    /// Answer `method(params)` from the store, or say it must be forwarded.
    pub(super) async fn answer(&self, method: &str, params: Option<&RawValue>) -> Result<Local, RpcError> {
        let p = params::positional(params)?;
        let out = match method {
            "eth_chainId" => self.heads.chain_id.map(hex).ok_or(Miss::Forward(None)),
            "net_version" => self.heads.chain_id.map(|c| format!("\"{c}\"")).ok_or(Miss::Forward(None)),
            "eth_blockNumber" => self.heads.latest.map(hex).ok_or(Miss::Forward(None)),
            "eth_getBlockByNumber" | "eth_getBlockByHash" => self.block(&p, method.ends_with("Hash")),
            "eth_getBlockTransactionCountByNumber" | "eth_getBlockTransactionCountByHash" => {
                self.count(&p, method.ends_with("Hash"), "transactions")
            }
            "eth_getUncleCountByBlockNumber" | "eth_getUncleCountByBlockHash" => {
                self.count(&p, method.ends_with("Hash"), "uncles")
            }
            "eth_getTransactionByHash" => self.tx_by_hash(&p, Kept::Block),
            "eth_getTransactionReceipt" => self.tx_by_hash(&p, Kept::Receipts),
            "eth_getTransactionByBlockNumberAndIndex" | "eth_getTransactionByBlockHashAndIndex" => {
                self.tx_by_index(&p, method.contains("Hash"))
            }
            "eth_getBlockReceipts" => self.receipts(&p),
            "eth_getLogs" => self.logs(&p).await,
            _ => Err(Miss::Forward(None)),
        };
        match out {
            Ok(text) => Ok(Local::Answer(text)),
            Err(Miss::Forward(need)) => Ok(Local::Forward(need)),
            Err(Miss::Error(e)) => Err(e),
        }
    }

    fn block_param(&self, p: &[&RawValue], by_hash: bool) -> Result<BlockAt, Miss> {
        let v = arg(p, 0, "block")?;
        if by_hash {
            return Ok(BlockAt::Hash(params::hash(v, "block hash")?));
        }
        self.at(BlockId::Tag(params::tag(v)?))
    }

    fn block(&self, p: &[&RawValue], by_hash: bool) -> Result<String, Miss> {
        let at = self.block_param(p, by_hash)?;
        let full = params::boolean(arg(p, 1, "full")?, "full")?;
        let Some(k) = self.store.kept_json(at, Kept::Block)? else {
            return Err(miss(at));
        };
        if full && !k.full_txs {
            return Err(miss(at));
        }
        let text = k.json.text().map_err(internal)?;
        if full || !k.full_txs {
            return Ok(text);
        }
        Ok(with_tx_hashes(&text)?)
    }

    fn count(&self, p: &[&RawValue], by_hash: bool, list: &str) -> Result<String, Miss> {
        let at = self.block_param(p, by_hash)?;
        let Some(k) = self.store.kept_json(at, Kept::Block)? else {
            return Err(miss(at));
        };
        if list == "transactions" {
            return Ok(hex(u64::from(k.tx_count)));
        }
        let text = k.json.text().map_err(internal)?;
        let n = field_list(&text, list)?.len();
        Ok(hex(n as u64))
    }

    fn tx_by_hash(&self, p: &[&RawValue], what: Kept) -> Result<String, Miss> {
        let h = params::hash(arg(p, 0, "hash")?, "transaction hash")?;
        let Some((block, idx)) = self.store.position_of(h, what)? else {
            return Err(Miss::Forward(None));
        };
        self.element(BlockAt::Hash(block), what, idx)
    }

    fn tx_by_index(&self, p: &[&RawValue], by_hash: bool) -> Result<String, Miss> {
        let at = self.block_param(p, by_hash)?;
        let idx = params::quantity(arg(p, 1, "index")?, "index")?;
        let idx = u32::try_from(idx).unwrap_or(u32::MAX);
        self.element(at, Kept::Block, idx)
    }

    /// Transaction (or receipt) `idx` of the block `at`; `null` past the end, as a node says.
    fn element(&self, at: BlockAt, what: Kept, idx: u32) -> Result<String, Miss> {
        let Some(k) = self.store.kept_json(at, what)? else {
            return Err(miss(at));
        };
        if what == Kept::Block && !k.full_txs {
            return Err(miss(at));
        }
        let text = k.json.text().map_err(internal)?;
        let list: Vec<&RawValue> = match what {
            Kept::Block => field_list(&text, "transactions")?,
            Kept::Receipts => serde_json::from_str(&text).map_err(internal)?,
        };
        Ok(list.get(idx as usize).map_or_else(|| "null".to_string(), |v| v.get().to_string()))
    }

    fn receipts(&self, p: &[&RawValue]) -> Result<String, Miss> {
        let id = params::block_id(arg(p, 0, "block")?)?;
        let at = self.at(id)?;
        match self.store.kept_json(at, Kept::Receipts)? {
            Some(k) => Ok(k.json.text().map_err(internal)?),
            None => Err(miss(at)),
        }
    }
}

/// Why the store did not answer: forward the call, or the call itself is wrong.
#[derive(Debug)]
enum Miss {
    Forward(Option<u64>),
    Error(RpcError),
}

impl From<RpcError> for Miss {
    fn from(e: RpcError) -> Self {
        Self::Error(e)
    }
}

impl From<StoreError> for Miss {
    fn from(e: StoreError) -> Self {
        Self::Error(e.into())
    }
}

/// Not stored: forward, pinned to the height when it was asked by number.
fn miss(at: BlockAt) -> Miss {
    match at {
        BlockAt::Number(n) => Miss::Forward(Some(n)),
        BlockAt::Hash(_) => Miss::Forward(None),
    }
}

/// The list `key` of a block object.
fn field_list<'a>(block: &'a str, key: &str) -> Result<Vec<&'a RawValue>, RpcError> {
    let Ordered(fields) = serde_json::from_str(block).map_err(internal)?;
    let (_, list) = fields.iter().find(|(k, _)| *k == key).ok_or_else(|| internal(format!("no {key}")))?;
    serde_json::from_str(list.get()).map_err(internal)
}

#[derive(Deserialize)]
struct TxHash<'a> {
    hash: &'a str,
}

/// The block object with each full transaction replaced by its hash (what `full = false`
/// gives), every other field as the node sent it and in its order.
fn with_tx_hashes(block: &str) -> Result<String, RpcError> {
    rebuild(block, |key, value| {
        if key != "transactions" {
            return Ok(Some(Cow::Borrowed(value)));
        }
        let txs: Vec<TxHash<'_>> = serde_json::from_str(value).map_err(internal)?;
        Ok(Some(Cow::Owned(serde_json::to_string(&txs.iter().map(|t| t.hash).collect::<Vec<_>>()).map_err(internal)?)))
    })
}

/// What [`rebuild`] makes of one field's value: kept as sent, replaced, or (`None`) left out.
pub(super) type Field<'a> = Result<Option<Cow<'a, str>>, RpcError>;

/// The stored object `json` with each field's value passed through `keep`, the fields in the
/// order the node sent them.
pub(super) fn rebuild<'a>(json: &'a str, keep: impl Fn(&str, &'a str) -> Field<'a>) -> Result<String, RpcError> {
    let Ordered(fields) = serde_json::from_str(json).map_err(internal)?;
    let mut out = String::with_capacity(json.len());
    out.push('{');
    for (key, value) in fields {
        let Some(v) = keep(key, value.get())? else { continue };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).map_err(internal)?);
        out.push(':');
        out.push_str(&v);
    }
    out.push('}');
    Ok(out)
}

/// A JSON object's fields in the order they came.
struct Ordered<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Ordered<'de>, M::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(Fields)
    }
}

impl View<'_> {
    async fn logs(&self, p: &[&RawValue]) -> Result<String, Miss> {
        let f = params::log_filter(arg(p, 0, "filter")?)?;
        if let Some(h) = f.block_hash {
            let k = self.store.kept_logs(BlockAt::Hash(h))?.ok_or(Miss::Forward(None))?;
            return self.scan_logs(&f, k.number, k.number, Some(k));
        }
        let (from, to) = (self.height(f.from.unwrap_or(Tag::Latest))?, self.height(f.to.unwrap_or(Tag::Latest))?);
        if from > to {
            return Err(Miss::Error(RpcError::new(code::SERVER, "invalid block range params")));
        }
        let max_range = self.opts.max_logs_range.max(1);
        if to - from >= max_range {
            return Err(Miss::Error(RpcError::new(code::LIMIT, format!("query exceeds max block range {max_range}"))));
        }
        if to - from < SCAN_BLOCKS {
            return self.scan_logs(&f, from, to, None);
        }
        if !self.store.logs_cover(from, to)? {
            return Err(Miss::Forward(Some(to)));
        }
        let max = self.opts.max_logs;
        let q = LogQuery {
            addresses: f.addresses,
            topics: f.topics,
            from,
            to,
            after: None,
            limit: u32::try_from(max + 1).unwrap_or(u32::MAX),
        };
        let rows = self.store.logs_page(&q).await?;
        if rows.len() > max {
            // The range that fits: up to the block before the one that went over.
            return Err(too_many(max, from, rows[max].block_number));
        }
        let mut out = String::from("[");
        for group in rows.chunk_by(|a, b| a.block_hash == b.block_hash) {
            let h: B256 = group[0].block_hash.parse().map_err(|_| Miss::Error(internal("block hash")))?;
            let k = self.store.kept_logs(BlockAt::Hash(h))?;
            let logs = k.and_then(|k| k.logs).ok_or(Miss::Forward(Some(to)))?;
            for r in group {
                let log = usize::try_from(r.log_index).ok().map(|i| logs.get(i)).transpose().map_err(internal)?;
                let log = log.flatten().ok_or_else(|| {
                    Miss::Error(internal(format!("no log {} in block {}", r.log_index, r.block_hash)))
                })?;
                push_item(&mut out, log.json);
            }
        }
        out.push(']');
        Ok(out)
    }

    /// A few blocks: read their kept logs and match each one, rather than ask the index (a
    /// point read per block on this thread; no query planning, no hop to a pool thread).
    /// `first` is block `from`, when already read. Every block is read before any is matched,
    /// so a range the store does not hold in full is forwarded whatever it would have matched.
    fn scan_logs(&self, f: &params::LogFilter, from: u64, to: u64, first: Option<KeptLogs>) -> Result<String, Miss> {
        let mut blocks = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0));
        let mut next = first;
        for n in from..=to {
            let k = match next.take() {
                Some(k) => k,
                None => self.store.kept_logs(BlockAt::Number(n))?.ok_or(Miss::Forward(Some(to)))?,
            };
            blocks.push((k.number, k.logs.ok_or(Miss::Forward(Some(to)))?));
        }
        let max = self.opts.max_logs;
        let mut out = String::from("[");
        let mut found = 0usize;
        for (number, logs) in blocks {
            for log in logs.entries() {
                let log = log.map_err(internal)?;
                if !f.matches(&log) {
                    continue;
                }
                found += 1;
                if found > max {
                    return Err(too_many(max, from, number));
                }
                push_item(&mut out, log.json);
            }
        }
        out.push(']');
        Ok(out)
    }
}

/// Blocks of an `eth_getLogs` range read one by one instead of through the log index.
const SCAN_BLOCKS: u64 = 16;

/// Past `max` logs, at block `over`: the error naming the range that fits, as providers do.
fn too_many(max: usize, from: u64, over: u64) -> Miss {
    let last = over.saturating_sub(1).max(from);
    Miss::Error(RpcError::new(
        code::LIMIT,
        format!("query returned more than {max} results. Try with this block range [{from:#x}, {last:#x}]."),
    ))
}

/// Append `item` to the JSON array being written in `out` (which starts with `[`).
pub(super) fn push_item(out: &mut String, item: &str) {
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str(item);
}

#[cfg(test)]
mod tests {
    use super::with_tx_hashes;

    #[test]
    fn hashes_only_keeps_every_other_field_as_sent_and_in_order() {
        let full = r#"{"number":"0x1","transactions":[{"hash":"0xaa","input":"0x"},{"hash":"0xbb"}],"extraData":"0x"}"#;
        assert_eq!(
            with_tx_hashes(full).unwrap(),
            r#"{"number":"0x1","transactions":["0xaa","0xbb"],"extraData":"0x"}"#
        );
        assert!(with_tx_hashes(r#"{"transactions":[{"nohash":1}]}"#).is_err());
    }
}
