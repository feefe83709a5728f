//! A provider's JSON answer kept as it was sent, zstd-compressed: what `/rpc` serves byte for byte.
//!
//! A node's block and receipt objects carry fields the typed columns do not (signatures, access
//! lists, `extraData`, withdrawals, an L2's own fields). Keeping the verified answer itself is
//! the only way to give a client exactly what the node said, whatever the chain adds next.

use std::fmt;

/// zstd level: 1 compresses a 20-transaction block's JSON ~3× at several hundred MB/s on one
/// core (level 3 gains ~6 % in size for ~40 % more CPU; measured in BENCHMARKS.md §9).
const LEVEL: i32 = 1;

/// Decompressed JSON larger than this is refused (no stored answer is near it; a corrupt
/// frame must not allocate without bound).
const MAX_DECOMPRESSED: usize = 256 << 20;

/// Compressed JSON text (a zstd frame).
#[derive(Clone, PartialEq, Eq)]
pub struct RawJson(Vec<u8>);

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({} bytes compressed)", self.0.len())
    }
}

/// A stored frame that does not decompress to UTF-8 JSON text.
#[derive(Debug, thiserror::Error)]
#[error("stored JSON does not decompress: {0}")]
pub struct RawJsonError(String);

impl RawJson {
    /// Compress `text`.
    pub fn compress(text: &str) -> Self {
        Self(compress(text.as_bytes()))
    }

    /// A frame read back from the store.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The compressed bytes (what is stored).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text.
    pub fn text(&self) -> Result<String, RawJsonError> {
        String::from_utf8(decompress(&self.0)?).map_err(|e| RawJsonError(e.to_string()))
    }
}

/// `bytes` as one zstd frame.
pub(crate) fn compress(bytes: &[u8]) -> Vec<u8> {
    thread_local! {
        // One context per thread: making one per call costs more than compressing a block.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Compressor::new(LEVEL).ok());
    }
    let pooled = COMPRESSOR.with(|c| c.borrow_mut().as_mut().and_then(|c| c.compress(bytes).ok()));
    // Compressing into memory fails only if allocation does; then try a fresh context.
    let mut frame = pooled.or_else(|| zstd::bulk::compress(bytes, LEVEL).ok()).unwrap_or_default();
    // The frame comes in a buffer of the input's worst-case size: a block waiting for its
    // commit would hold its whole uncompressed size (BENCHMARKS §7: peak RSS).
    frame.shrink_to_fit();
    frame
}

/// The bytes of the zstd frame `frame` (at most [`MAX_DECOMPRESSED`]).
pub(crate) fn decompress(frame: &[u8]) -> Result<Vec<u8>, RawJsonError> {
    thread_local! {
        // As for compression: a context per call was a tenth of an `eth_getLogs` answer.
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
    }
    let size = zstd::bulk::Decompressor::upper_bound(frame).unwrap_or(MAX_DECOMPRESSED).min(MAX_DECOMPRESSED);
    let pooled = DECOMPRESSOR.with(|d| d.borrow_mut().as_mut().map(|d| d.decompress(frame, size)));
    match pooled {
        Some(r) => r,
        None => zstd::bulk::decompress(frame, size),
    }
    .map_err(|e| RawJsonError(e.to_string()))
}

/// The logs of a block's receipts array, as the node sent them, in block order (log index 0, 1,
/// …: checked at ingest). Each borrows from `receipts`.
pub fn receipt_logs(receipts: &str) -> Result<Vec<&serde_json::value::RawValue>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Logs<'a> {
        #[serde(borrow, default)]
        logs: Vec<&'a serde_json::value::RawValue>,
    }
    let rs: Vec<Logs<'_>> = serde_json::from_str(receipts)?;
    Ok(rs.into_iter().flat_map(|r| r.logs).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let text = r#"{"number":"0x1","transactions":[]}"#.repeat(50);
        let raw = RawJson::compress(&text);
        assert!(raw.as_bytes().len() < text.len());
        assert_eq!(raw.text().unwrap(), text);
        assert!(RawJson::from_stored(vec![1, 2, 3, 4]).text().is_err());
        let logs =
            receipt_logs(r#"[{"logs":[{"a":1}]},{"status":"0x1","logs":[]},{"logs":[{"b":2},{"c":3}]}]"#).unwrap();
        assert_eq!(logs.iter().map(|l| l.get()).collect::<Vec<_>>(), [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
    }
}
