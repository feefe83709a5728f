//! A block's logs as the node sent them, each beside its address and topics, in one zstd frame:
//! what `eth_getLogs` matches and serves without parsing JSON.
//!
//! The receipts' JSON (see [`crate::rawjson`]) holds the same log objects, but reaching them means
//! decompressing and scanning every receipt (blooms included: ~4× the logs' bytes). A filter
//! needs only each log's address and topics; those are kept here in binary, ahead of the text.
//!
//! Layout (little-endian) before compression: the version byte; the log count (u32); for each log
//! its address (20 bytes), its topic count (one byte, at most 4), its topics (32 bytes each) and
//! the length of its JSON (u32); then the logs' JSON objects, concatenated in block order.

use alloy_primitives::B256;

use crate::rawjson::{compress, decompress};

const VERSION: u8 = 1;

/// One log of a block: what a filter looks at, and the node's JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry<'a> {
    pub address: &'a [u8; 20],
    pub topics: &'a [[u8; 32]],
    pub json: &'a str,
}

/// A block's logs, compressed (what is stored).
#[derive(Clone, PartialEq, Eq)]
pub struct RawLogs(Vec<u8>);

impl std::fmt::Debug for RawLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawLogs({} bytes compressed)", self.0.len())
    }
}

/// A stored frame that is not a block's logs in this layout.
#[derive(Debug, thiserror::Error)]
#[error("stored logs do not decode: {0}")]
pub struct RawLogsError(String);

impl RawLogs {
    /// Pack `logs` (in block order): each log's address, topics and JSON object. A log with more
    /// than 4 topics is not one any node sends (decoding refused it), so here it is an error too.
    pub fn build<'a>(
        logs: impl IntoIterator<Item = (&'a [u8; 20], &'a [B256], &'a str)>,
    ) -> Result<Self, RawLogsError> {
        Ok(Self(compress(&pack(logs)?)))
    }

    /// A frame read back from the store.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The compressed bytes (what is stored).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Decompress, ready to walk with [`Unpacked::entries`].
    pub fn unpack(&self) -> Result<Unpacked, RawLogsError> {
        Unpacked::parse(decompress(&self.0).map_err(|e| RawLogsError(e.to_string()))?)
    }
}

/// A block's logs, decompressed and checked: every entry lies inside the frame.
#[derive(Debug)]
pub struct Unpacked {
    bytes: Vec<u8>,
    /// Per log: where its entry starts (its address), its topic count, and its JSON's range.
    index: Vec<(usize, usize, std::ops::Range<usize>)>,
}

impl Unpacked {
    /// The logs of a block's receipts array as a node sent it (how they were kept before
    /// [`RawLogs`] was).
    pub fn from_receipts(receipts: &str) -> Result<Self, RawLogsError> {
        #[derive(serde::Deserialize)]
        struct Keys {
            address: alloy_primitives::Address,
            #[serde(default)]
            topics: Vec<B256>,
        }
        let logs = crate::rawjson::receipt_logs(receipts).map_err(|e| RawLogsError(e.to_string()))?;
        let keys = logs
            .iter()
            .map(|l| serde_json::from_str::<Keys>(l.get()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RawLogsError(format!("a log: {e}")))?;
        Self::parse(pack(keys.iter().zip(&logs).map(|(k, l)| (&k.address.0.0, &k.topics[..], l.get())))?)
    }

    fn parse(bytes: Vec<u8>) -> Result<Self, RawLogsError> {
        let bad = |why: &str| RawLogsError(why.to_string());
        if bytes.first() != Some(&VERSION) {
            return Err(bad("unknown version"));
        }
        let count = read_u32(&bytes, 1).ok_or_else(|| bad("no count"))?;
        let mut at = 5;
        let mut heads = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let n = usize::from(*bytes.get(at + 20).ok_or_else(|| bad("truncated entry"))?);
            if n > 4 {
                return Err(bad("more than 4 topics"));
            }
            let len = read_u32(&bytes, at + 21 + 32 * n).ok_or_else(|| bad("truncated entry"))?;
            heads.push((at, n, len));
            at += 25 + 32 * n;
        }
        let mut index = Vec::with_capacity(heads.len());
        for (head, n, len) in heads {
            let end = at.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated JSON"))?;
            index.push((head, n, at..end));
            at = end;
        }
        if at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self { bytes, index })
    }

    /// How many logs the block has.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the block has no logs.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The log at `i` (its index in the block).
    pub fn get(&self, i: usize) -> Result<Option<LogEntry<'_>>, RawLogsError> {
        self.index.get(i).map(|e| self.entry(e)).transpose()
    }

    /// Every log, in block order.
    pub fn entries(&self) -> impl Iterator<Item = Result<LogEntry<'_>, RawLogsError>> {
        self.index.iter().map(|e| self.entry(e))
    }

    fn entry(&self, (head, n, json): &(usize, usize, std::ops::Range<usize>)) -> Result<LogEntry<'_>, RawLogsError> {
        let bad = |why: &str| RawLogsError(why.to_string());
        // In range: checked by `parse`.
        let address: &[u8; 20] = self.bytes[*head..head + 20].try_into().map_err(|_| bad("address"))?;
        let (topics, _) = self.bytes[head + 21..head + 21 + 32 * n].as_chunks::<32>();
        let json = std::str::from_utf8(&self.bytes[json.clone()]).map_err(|e| bad(&e.to_string()))?;
        Ok(LogEntry { address, topics, json })
    }
}

fn pack<'a>(logs: impl IntoIterator<Item = (&'a [u8; 20], &'a [B256], &'a str)>) -> Result<Vec<u8>, RawLogsError> {
    let logs: Vec<_> = logs.into_iter().collect();
    let count = u32::try_from(logs.len()).map_err(|_| RawLogsError("too many logs".into()))?;
    let head: usize = logs.iter().map(|(_, t, _)| 25 + 32 * t.len()).sum();
    let body: usize = logs.iter().map(|(_, _, j)| j.len()).sum();
    let mut out = Vec::with_capacity(5 + head + body);
    out.push(VERSION);
    out.extend_from_slice(&count.to_le_bytes());
    for (address, topics, json) in &logs {
        let n = u8::try_from(topics.len()).ok().filter(|&n| n <= 4);
        let n = n.ok_or_else(|| RawLogsError(format!("{} topics", topics.len())))?;
        let len = u32::try_from(json.len()).map_err(|_| RawLogsError("log JSON above 4 GiB".into()))?;
        out.extend_from_slice(*address);
        out.push(n);
        for t in *topics {
            out.extend_from_slice(t.as_slice());
        }
        out.extend_from_slice(&len.to_le_bytes());
    }
    for (_, _, json) in &logs {
        out.extend_from_slice(json.as_bytes());
    }
    Ok(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_and_refuses_damage() {
        let (a, b) = ([1u8; 20], [2u8; 20]);
        let topics = [B256::repeat_byte(7), B256::repeat_byte(8)];
        let (ja, jb) = (r#"{"address":"0x01","logIndex":"0x0"}"#, r#"{"address":"0x02","logIndex":"0x1"}"#);
        let packed = RawLogs::build([(&a, &topics[..], ja), (&b, &[][..], jb)]).unwrap();
        let back = RawLogs::from_stored(packed.as_bytes().to_vec()).unpack().unwrap();
        let want = [
            LogEntry { address: &a, topics: &[[7; 32], [8; 32]], json: ja },
            LogEntry { address: &b, topics: &[], json: jb },
        ];
        assert_eq!(back.entries().collect::<Result<Vec<_>, _>>().unwrap(), want);
        assert_eq!((back.len(), back.get(1).unwrap(), back.get(2).unwrap()), (2, Some(want[1]), None));
        assert!(RawLogs::build([]).unwrap().unpack().unwrap().is_empty());
        let five = [B256::ZERO; 5];
        assert!(RawLogs::build([(&a, &five[..], "{}")]).is_err());

        // Frames that are not this layout: each refused, never a panic.
        let raw = |b: &[u8]| RawLogs(compress(b)).unpack();
        assert!(raw(&[]).is_err());
        assert!(raw(&[9, 0, 0, 0, 0]).is_err());
        assert!(raw(&[1, 1, 0, 0, 0]).is_err());
        let entry = |topics: u8, len: u32| {
            let mut e = vec![1, 1, 0, 0, 0];
            e.extend([0u8; 20]);
            e.push(topics);
            e.extend(len.to_le_bytes());
            e
        };
        assert!(raw(&entry(5, 0)).is_err());
        let mut short = entry(0, 3);
        short.extend(b"{}");
        assert!(raw(&short).is_err());
        let mut long = entry(0, 2);
        long.extend(b"{}}");
        assert!(raw(&long).is_err());
        let mut not_text = entry(0, 3);
        not_text.extend(b"{\xff}");
        assert!(raw(&not_text).unwrap().get(0).is_err());
        assert!(RawLogs(vec![1, 2, 3]).unpack().is_err());
    }
}
