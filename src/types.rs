//! Checked conversions at the storage boundary: u64 block numbers and quantities vs SQLite's i64.

use thiserror::Error;

/// A value that does not fit where it has to go.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{what} = {value} does not fit in SQLite's signed 64-bit integer")]
pub struct OutOfRange {
    /// Which quantity overflowed (for the error message).
    pub what: &'static str,
    /// The value as text, so the message is exact for any width.
    pub value: String,
}

/// u64 → i64 for storage. Fails above `i64::MAX`; the only place this conversion is done.
pub fn to_sql(what: &'static str, value: u64) -> Result<i64, OutOfRange> {
    i64::try_from(value).map_err(|_| OutOfRange { what, value: value.to_string() })
}

/// i64 → u64 when reading back. A negative value means the file was written by something else.
pub fn from_sql(what: &'static str, value: i64) -> Result<u64, OutOfRange> {
    u64::try_from(value).map_err(|_| OutOfRange { what, value: value.to_string() })
}

/// Milliseconds since the Unix epoch, for telemetry timestamps.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole microseconds, saturating, for latency columns.
pub fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_checked() {
        assert_eq!(to_sql("n", 5), Ok(5));
        assert!(to_sql("n", u64::MAX).is_err());
        assert_eq!(from_sql("n", 7), Ok(7));
        assert!(from_sql("n", -1).is_err());
        let e = to_sql("block number", 1 << 63).unwrap_err();
        assert!(e.to_string().contains("block number"));
    }
}
