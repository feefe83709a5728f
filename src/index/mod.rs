//! What is indexed besides blocks and transactions — shared vocabulary for ingest, store and
//! api: log filters and selections ([`filter`]), contracts' events as typed tables ([`abi`]),
//! and decoding one log into a table's row ([`decode`]).

pub mod abi;
pub mod decode;
pub mod filter;

pub use abi::{Column, ColumnKind, EventTable, Indexing, is_plain_name};
pub use decode::{DecodedLog, SqlValue};
pub use filter::{LogFilter, LogSelection};

/// A configuration of filters or contracts that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("log filter {0}")]
    Filter(String),
    #[error("contract {contract}: {why}")]
    Contract { contract: String, why: String },
}
