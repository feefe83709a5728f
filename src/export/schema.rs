//! The exported tables: their columns, typed schema and the SQL that pages through them.
//!
//! One typed schema serves every format. Parquet gets it as written (documented in the
//! docs/schema.md, "Export files"); CSV and JSONL render the same values as text:
//! - block numbers, gas, nonces, counts, timestamps in seconds: `UInt64`;
//! - `*_ms` times (ms since the Unix epoch), latencies, ids, RPC codes: `Int64`;
//! - hashes: `FixedSizeBinary(32)`, addresses: `FixedSizeBinary(20)`, calldata: `Binary` in
//!   Parquet (half the size of hex and what cryo writes); `0x` lowercase hex in CSV and JSONL;
//! - wei amounts and decoded uint256/int256 values: `Utf8` decimal strings (a u256 fits no
//!   Parquet integer type);
//! - flags: `Boolean`.
//!
//! Decoded event tables (`evt_<contract>_<event>`) are exported too: their columns come from
//! the ABI recorded in `event_tables`, so an export needs no config.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

/// How a column is typed in every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unsigned 64-bit (block numbers, gas, counts).
    U64,
    /// Signed 64-bit (ms timestamps, latencies, ids, error codes).
    I64,
    /// true/false, stored as 0/1.
    Bool,
    /// UTF-8 text.
    Text,
    /// A wei amount: stored as an integer or decimal text, exported as decimal text.
    Wei,
    /// A decoded wide integer's exact decimal text (may be negative).
    Decimal,
    /// 32 bytes.
    Hash,
    /// 20 bytes.
    Address,
    /// Any length of bytes.
    Bytes,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Self::U64 => DataType::UInt64,
            Self::I64 => DataType::Int64,
            Self::Bool => DataType::Boolean,
            Self::Text | Self::Wei | Self::Decimal => DataType::Utf8,
            Self::Hash => DataType::FixedSizeBinary(32),
            Self::Address => DataType::FixedSizeBinary(20),
            Self::Bytes => DataType::Binary,
        }
    }
}

/// One exported column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub nullable: bool,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name: Cow::Borrowed(name), kind, nullable: false }
}

const fn opt(name: &'static str, kind: Kind) -> Column {
    Column { name: Cow::Borrowed(name), kind, nullable: true }
}

/// What a table's ranges and chunks are measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Block heights (`--from/--to`, `--chunk-size` blocks).
    Height,
    /// Milliseconds since the epoch (`--since/--until`, `--chunk-minutes`).
    Time,
}

/// The tables `export` knows: the stored ones, and each decoded event table of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    Blocks,
    Transactions,
    Receipts,
    Logs,
    ProviderRequests,
    BlockSightings,
    Reorgs,
    GapRepairs,
    /// A decoded table, as the file's `event_tables` describes it.
    Events(Arc<EventExport>),
}

/// A decoded event table's export: columns and the SQL that pages through it.
#[derive(Debug, PartialEq, Eq)]
pub struct EventExport {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) page_sql: String,
    pub(crate) bounds_sql: String,
}

use Kind::{Address, Bool, Bytes, Hash, I64, Text, U64, Wei};

const BLOCKS: &[Column] = &[
    col("number", U64),
    col("hash", Hash),
    col("parent_hash", Hash),
    col("timestamp", U64),
    col("miner", Address),
    col("gas_used", U64),
    col("gas_limit", U64),
    opt("base_fee_per_gas", Wei),
    col("state_root", Hash),
    col("transactions_root", Hash),
    col("receipts_root", Hash),
    opt("size", U64),
    col("tx_count", U64),
    opt("hash_verified", Bool),
    opt("provider", Text),
    col("fetched_at_ms", I64),
    col("canonical", Bool),
];

const TRANSACTIONS: &[Column] = &[
    col("block_number", U64),
    col("block_hash", Hash),
    col("transaction_index", U64),
    col("hash", Hash),
    col("from_address", Address),
    opt("to_address", Address),
    col("value", Wei),
    col("nonce", U64),
    col("gas", U64),
    opt("gas_price", Wei),
    opt("max_fee_per_gas", Wei),
    opt("max_priority_fee_per_gas", Wei),
    col("input", Bytes),
    col("tx_type", U64),
    col("block_timestamp", U64),
    col("canonical", Bool),
];

const RECEIPTS: &[Column] = &[
    col("block_number", U64),
    col("block_hash", Hash),
    col("transaction_index", U64),
    col("transaction_hash", Hash),
    opt("status", U64),
    opt("post_state", Hash),
    col("tx_type", U64),
    col("gas_used", U64),
    col("cumulative_gas_used", U64),
    opt("effective_gas_price", Wei),
    opt("contract_address", Address),
    opt("blob_gas_used", U64),
    opt("blob_gas_price", Wei),
    col("log_count", U64),
    col("block_timestamp", U64),
    col("canonical", Bool),
];

/// cryo's `logs` columns (same names, same meaning), plus the block's hash and time.
const LOGS: &[Column] = &[
    col("block_number", U64),
    col("block_hash", Hash),
    col("transaction_index", U64),
    col("log_index", U64),
    col("transaction_hash", Hash),
    col("address", Address),
    opt("topic0", Hash),
    opt("topic1", Hash),
    opt("topic2", Hash),
    opt("topic3", Hash),
    col("data", Bytes),
    col("block_timestamp", U64),
    col("canonical", Bool),
];

/// The columns every decoded table starts with (its parameters follow, then these two:
/// [`EVENT_TAIL`]).
pub(crate) const EVENT_HEAD: &[Column] = &[
    col("block_number", U64),
    col("block_hash", Hash),
    col("transaction_index", U64),
    col("log_index", U64),
    col("transaction_hash", Hash),
    col("address", Address),
];

pub(crate) const EVENT_TAIL: &[Column] = &[col("block_timestamp", U64), col("canonical", Bool)];

const PROVIDER_REQUESTS: &[Column] = &[
    col("id", I64),
    col("ts_ms", I64),
    col("provider", Text),
    col("method", Text),
    opt("block_number", U64),
    col("latency_us", I64),
    col("outcome", Text),
    opt("http_status", I64),
    opt("rpc_code", I64),
    opt("bytes", I64),
    opt("head_reported", U64),
    col("attempt", I64),
    col("hedged", Bool),
    col("batch_size", I64),
    col("credits", I64),
    opt("error", Text),
];

const BLOCK_SIGHTINGS: &[Column] = &[
    col("number", U64),
    col("hash", Hash),
    col("provider", Text),
    col("first_seen_ms", I64),
    col("behind_first_ms", I64),
];

const REORGS: &[Column] = &[
    col("id", I64),
    col("detected_at_ms", I64),
    col("depth", U64),
    col("fork_number", U64),
    col("fork_hash", Hash),
    col("old_tip_number", U64),
    col("old_tip_hash", Hash),
    col("new_tip_number", U64),
    col("new_tip_hash", Hash),
    opt("provider", Text),
];

const GAP_REPAIRS: &[Column] = &[
    col("id", I64),
    col("detected_at_ms", I64),
    col("attempted_at_ms", I64),
    col("from_number", U64),
    col("to_number", U64),
    col("reason", Text),
    opt("provider", Text),
    col("outcome", Text),
    col("blocks", U64),
    opt("error", Text),
];

impl Table {
    /// Every stored (not decoded) table, in the order the help text lists them.
    pub const STORED: [Self; 8] = [
        Self::Blocks,
        Self::Transactions,
        Self::Receipts,
        Self::Logs,
        Self::ProviderRequests,
        Self::BlockSightings,
        Self::Reorgs,
        Self::GapRepairs,
    ];

    /// The table's name on the command line, in URLs and in file names.
    pub fn name(&self) -> &str {
        match self {
            Self::Blocks => "blocks",
            Self::Transactions => "transactions",
            Self::Receipts => "receipts",
            Self::Logs => "logs",
            Self::ProviderRequests => "provider_requests",
            Self::BlockSightings => "block_sightings",
            Self::Reorgs => "reorgs",
            Self::GapRepairs => "gap_repairs",
            Self::Events(e) => &e.name,
        }
    }

    /// A stored table by name (decoded tables are looked up in the file: `export::resolve`).
    pub fn stored(name: &str) -> Option<Self> {
        Self::STORED.into_iter().find(|t| t.name() == name)
    }

    /// The exported columns, in order.
    pub fn columns(&self) -> &[Column] {
        match self {
            Self::Blocks => BLOCKS,
            Self::Transactions => TRANSACTIONS,
            Self::Receipts => RECEIPTS,
            Self::Logs => LOGS,
            Self::ProviderRequests => PROVIDER_REQUESTS,
            Self::BlockSightings => BLOCK_SIGHTINGS,
            Self::Reorgs => REORGS,
            Self::GapRepairs => GAP_REPAIRS,
            Self::Events(e) => &e.columns,
        }
    }

    /// The Arrow schema every format follows.
    pub fn schema(&self) -> Arc<Schema> {
        let fields: Vec<Field> =
            self.columns().iter().map(|c| Field::new(c.name.as_ref(), c.kind.data_type(), c.nullable)).collect();
        Arc::new(Schema::new(fields))
    }

    /// Heights or time.
    pub fn key_kind(&self) -> KeyKind {
        match self {
            Self::ProviderRequests => KeyKind::Time,
            _ => KeyKind::Height,
        }
    }

    /// Chain tables hold canonical and orphaned rows; `--include-orphaned` applies to them.
    pub fn has_orphans(&self) -> bool {
        matches!(self, Self::Blocks | Self::Transactions | Self::Receipts | Self::Logs | Self::Events(_))
    }

    /// The page query: `?1` upper key (inclusive), `?2` include orphaned (0/1), `?3` row limit,
    /// `?4..` the cursor, which is also the last columns of each row.
    pub(crate) fn page_sql(&self) -> &str {
        match self {
            Self::Blocks => include_str!("../../sql/export/blocks.sql"),
            Self::Transactions => include_str!("../../sql/export/transactions.sql"),
            Self::Receipts => include_str!("../../sql/export/receipts.sql"),
            Self::Logs => include_str!("../../sql/export/logs.sql"),
            Self::ProviderRequests => include_str!("../../sql/export/provider_requests.sql"),
            Self::BlockSightings => include_str!("../../sql/export/block_sightings.sql"),
            Self::Reorgs => include_str!("../../sql/export/reorgs.sql"),
            Self::GapRepairs => include_str!("../../sql/export/gap_repairs.sql"),
            Self::Events(e) => &e.page_sql,
        }
    }

    /// The default range: lowest and highest key stored (`?1` include orphaned).
    pub(crate) fn bounds_sql(&self) -> &str {
        match self {
            Self::Blocks | Self::Transactions | Self::Receipts | Self::Logs => {
                include_str!("../../sql/export/bounds_blocks.sql")
            }
            Self::ProviderRequests => include_str!("../../sql/export/bounds_provider_requests.sql"),
            Self::BlockSightings => include_str!("../../sql/export/bounds_block_sightings.sql"),
            Self::Reorgs => include_str!("../../sql/export/bounds_reorgs.sql"),
            Self::GapRepairs => include_str!("../../sql/export/bounds_gap_repairs.sql"),
            Self::Events(e) => &e.bounds_sql,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    #[value(alias = "ndjson")]
    Jsonl,
    Parquet,
}

impl Format {
    /// Parse `csv`, `jsonl` (or `ndjson`) or `parquet`, as the command line does.
    pub fn parse(s: &str) -> Result<Self, String> {
        <Self as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| format!("unknown format {s:?}; expected csv, jsonl or parquet"))
    }

    /// File extension.
    pub fn ext(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Table::STORED {
            assert_eq!(Table::stored(t.name()).as_ref(), Some(&t));
            assert!(!t.columns().is_empty());
        }
        assert_eq!(Table::stored("nope"), None);
        assert!(Format::parse("xml").is_err());
    }
}
