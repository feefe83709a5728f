//! Contracts' events as typed tables: each configured event (from a JSON ABI file or a
//! human-readable line) becomes an [`EventTable`] named `evt_<contract>_<event>` with one column
//! per parameter, and the whole `[index]` section becomes one [`Indexing`]: the log selection
//! and the tables, with a lookup from (address, topic0) to the tables a log belongs to.

use std::collections::HashMap;

use alloy_dyn_abi::{DynSolEvent, DynSolType, Specifier};
use alloy_json_abi::{Event, JsonAbi};
use alloy_primitives::{Address, B256};

use super::{IndexError, LogFilter, LogSelection};
use crate::config::{ContractConfig, IndexConfig};

/// How a parameter is stored (see docs/schema.md, "Decoded events").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// 20-byte blob; the view shows 0x hex.
    Address,
    /// 0 or 1.
    Bool,
    /// An integer type that always fits i64 (`uint8`..`uint56`, `int8`..`int64`).
    Int,
    /// A wider integer (`uint64`..`uint256`, `int72`..`int256`): the column holds a form that
    /// sorts and compares right (INTEGER when it fits i64, else 0x + 64 hex digits for positive
    /// values and REAL for negative ones), and `<name>_dec` the exact decimal text.
    Big { signed: bool },
    /// `bytesN`, `function`: a blob, shown as 0x hex.
    FixedBytes,
    /// `bytes`: a blob, shown as 0x hex.
    Bytes,
    /// `string`: text.
    Text,
    /// Arrays and tuples: JSON text (integers as decimal strings).
    Json,
    /// An indexed dynamic parameter (string, bytes, array, tuple): the log holds only its keccak
    /// hash, a 32-byte blob shown as 0x hex.
    TopicHash,
}

impl ColumnKind {
    /// The kind for a parameter of type `ty`.
    fn of(ty: &DynSolType, indexed: bool) -> Self {
        match ty {
            DynSolType::Address => Self::Address,
            DynSolType::Bool => Self::Bool,
            DynSolType::Uint(bits) if *bits < 64 => Self::Int,
            DynSolType::Int(bits) if *bits <= 64 => Self::Int,
            DynSolType::Uint(_) => Self::Big { signed: false },
            DynSolType::Int(_) => Self::Big { signed: true },
            DynSolType::FixedBytes(_) | DynSolType::Function => Self::FixedBytes,
            _ if indexed => Self::TopicHash,
            DynSolType::Bytes => Self::Bytes,
            DynSolType::String => Self::Text,
            _ => Self::Json,
        }
    }

    /// The kind for a Solidity type as an ABI writes it (`uint256`, `bytes32[]`); None when
    /// the type does not parse.
    pub fn for_type(ty: &str, indexed: bool) -> Option<Self> {
        DynSolType::parse(ty).ok().map(|t| Self::of(&t, indexed))
    }

    /// The STRICT column type of the value column.
    pub fn sql_type(self) -> &'static str {
        match self {
            Self::Address | Self::FixedBytes | Self::Bytes | Self::TopicHash => "BLOB",
            Self::Bool | Self::Int => "INTEGER",
            Self::Big { .. } => "ANY",
            Self::Text | Self::Json => "TEXT",
        }
    }

    /// Shown as 0x hex in the view.
    pub fn is_blob(self) -> bool {
        self.sql_type() == "BLOB"
    }
}

/// One parameter's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The parameter's name in snake case, or `arg<i>` when it has none.
    pub name: String,
    /// The Solidity type, as the ABI has it.
    pub ty: String,
    pub kind: ColumnKind,
    pub indexed: bool,
}

/// One event of one contract, as a table.
#[derive(Debug, Clone)]
pub struct EventTable {
    /// `evt_<contract>_<event>`; the view is this name + `_view`.
    pub name: String,
    pub contract: String,
    pub event: Event,
    pub resolved: DynSolEvent,
    pub topic0: B256,
    pub addresses: Vec<Address>,
    pub start_block: u64,
    pub columns: Vec<Column>,
}

impl EventTable {
    /// The full signature, with names and `indexed` (what the registry compares).
    pub fn signature(&self) -> String {
        self.event.full_signature()
    }

    /// The filter that selects this table's logs.
    pub fn filter(&self) -> LogFilter {
        LogFilter { addresses: self.addresses.clone(), topics: [vec![self.topic0], vec![], vec![], vec![]] }
    }
}

/// Columns every decoded table has before the parameters (a parameter of the same name gets a
/// `p_` prefix).
pub const FIXED_COLUMNS: [&str; 9] = [
    "block_id",
    "log_index",
    "block_number",
    "block_hash",
    "transaction_index",
    "transaction_hash",
    "address",
    "block_timestamp",
    // exports add it
    "canonical",
];

/// The whole `[index]` section, checked: whether receipts are fetched, which logs are kept,
/// and the decoded tables.
#[derive(Debug, Clone, Default)]
pub struct Indexing {
    pub receipts: bool,
    pub selection: LogSelection,
    pub logs_range: u64,
    pub tables: Vec<EventTable>,
    /// How often a new block's receipts are spot-checked on another provider (None: never).
    pub audit: Option<std::time::Duration>,
    by_log: HashMap<(Address, B256), Vec<u16>>,
}

impl Indexing {
    /// From the configuration; `receipts` is whether full receipts are fetched. Without
    /// receipts, or with explicit filters, the contracts' events join the selection.
    pub fn from_config(c: &IndexConfig, receipts: bool) -> Result<Self, IndexError> {
        let mut filters = Vec::new();
        for (i, f) in c.logs.iter().enumerate() {
            let what = format!("[[index.logs]] #{}", i + 1);
            filters.push(LogFilter::parse(&what, &f.address, [&f.topic0, &f.topic1, &f.topic2, &f.topic3])?);
        }
        let mut tables = Vec::new();
        for k in &c.contracts {
            tables.extend(contract_tables(k)?);
        }
        let mut seen = std::collections::HashSet::new();
        for t in &tables {
            if !seen.insert(t.name.clone()) {
                return Err(IndexError::Contract {
                    contract: t.contract.clone(),
                    why: format!("two events make the table {}; rename a contract", t.name),
                });
            }
        }
        if (!receipts || !filters.is_empty()) && !tables.is_empty() {
            filters.extend(tables.iter().map(EventTable::filter));
        }
        let mut by_log: HashMap<(Address, B256), Vec<u16>> = HashMap::new();
        for (i, t) in tables.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| IndexError::Contract {
                contract: t.contract.clone(),
                why: "more than 65535 decoded events".into(),
            })?;
            for a in &t.addresses {
                by_log.entry((*a, t.topic0)).or_default().push(i);
            }
        }
        let audit = (receipts && c.audit_secs > 0).then(|| std::time::Duration::from_secs(c.audit_secs));
        Ok(Self {
            receipts,
            selection: LogSelection::new(filters),
            logs_range: c.logs_range.max(1),
            tables,
            audit,
            by_log,
        })
    }

    /// Whether any log is stored at all.
    pub fn stores_logs(&self) -> bool {
        self.receipts || !self.selection.is_all()
    }

    /// The tables a log of `address` with first topic `topic0` at height `number` belongs to.
    pub fn tables_for(&self, address: &Address, topic0: Option<&B256>, number: u64) -> impl Iterator<Item = u16> + '_ {
        topic0
            .and_then(|t| self.by_log.get(&(*address, *t)))
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&i| self.tables.get(usize::from(i)).is_some_and(|t| number >= t.start_block))
    }
}

/// A name as decoded tables and their columns are named: lowercase letters, digits and `_`
/// (safe to splice into SQL, which is why names from a file are checked against it).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// The tables of one contract entry.
fn contract_tables(k: &ContractConfig) -> Result<Vec<EventTable>, IndexError> {
    let err = |why: String| IndexError::Contract { contract: k.name.clone(), why };
    if !is_plain_name(&k.name) {
        return Err(err("name must be lowercase letters, digits and _ (it names tables)".into()));
    }
    if k.address.is_empty() {
        return Err(err("needs at least one address".into()));
    }
    let addresses = k
        .address
        .iter()
        .map(|a| a.trim().parse::<Address>().map_err(|e| err(format!("address {a:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut events: Vec<Event> = Vec::new();
    if let Some(path) = &k.abi {
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("ABI file {}: {e}", path.display())))?;
        events.extend(abi_events(&text).map_err(|e| err(format!("ABI file {}: {e}", path.display())))?);
    }
    for line in &k.events {
        let s = line.trim();
        let s = if s.starts_with("event ") { s.to_string() } else { format!("event {s}") };
        events.push(Event::parse(&s).map_err(|e| err(format!("event {line:?}: {e}")))?);
    }
    if events.is_empty() {
        return Err(err("no events: give `abi` (a JSON ABI file) or `events` (signatures)".into()));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *names.entry(snake(&e.name)).or_default() += 1;
    }
    let mut out = Vec::new();
    for e in events {
        if e.anonymous {
            return Err(err(format!("event {} is anonymous: without a topic0 its logs cannot be told apart", e.name)));
        }
        let resolved = e.resolve().map_err(|x| err(format!("event {}: {x}", e.name)))?;
        let topic0 = e.selector();
        let base = snake(&e.name);
        // Overloads share a name: the selector's first bytes tell their tables apart.
        let event_part = if names.get(&base).copied().unwrap_or(0) > 1 {
            format!("{base}_{}", alloy_primitives::hex::encode(&topic0[..4]))
        } else {
            base
        };
        let columns = columns(&e).map_err(|x| err(format!("event {}: {x}", e.name)))?;
        out.push(EventTable {
            name: format!("evt_{}_{event_part}", k.name),
            contract: k.name.clone(),
            event: e,
            resolved,
            topic0,
            addresses: addresses.clone(),
            start_block: k.start_block.unwrap_or(0),
            columns,
        });
    }
    Ok(out)
}

/// The events of a JSON ABI: a list of items, or an artifact object with an `abi` list.
fn abi_events(text: &str) -> Result<Vec<Event>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = match v {
        serde_json::Value::Object(mut o) => o.remove("abi").ok_or("an object without an \"abi\" list")?,
        other => other,
    };
    let abi: JsonAbi = serde_json::from_value(list).map_err(|e| format!("not an ABI: {e}"))?;
    Ok(abi.events().cloned().collect())
}

fn columns(e: &Event) -> Result<Vec<Column>, String> {
    let mut out: Vec<Column> = Vec::new();
    for (i, p) in e.inputs.iter().enumerate() {
        let ty = p.resolve().map_err(|x| format!("parameter {i} ({}): {x}", p.ty))?;
        let mut name = if p.name.is_empty() { format!("arg{i}") } else { snake(&p.name) };
        if FIXED_COLUMNS.contains(&name.as_str()) || name.ends_with("_dec") {
            name = format!("p_{name}");
        }
        while out.iter().any(|c| c.name == name || format!("{}_dec", c.name) == name) {
            name.push('_');
        }
        out.push(Column { name, ty: p.ty.clone(), kind: ColumnKind::of(&ty, p.indexed), indexed: p.indexed });
    }
    Ok(out)
}

/// `OwnershipTransferred` → `ownership_transferred`; anything but letters and digits → `_`.
pub fn snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase())) && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_string();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) { format!("_{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(events: &[&str]) -> ContractConfig {
        ContractConfig {
            name: "token".into(),
            address: vec!["0x00000000000000000000000000000000000000aa".into()],
            events: events.iter().map(ToString::to_string).collect(),
            ..ContractConfig::default()
        }
    }

    #[test]
    fn events_become_tables_with_typed_columns() {
        let k = contract(&[
            "event Transfer(address indexed from, address indexed to, uint256 value)",
            "OwnershipTransferred(address indexed previousOwner, address indexed newOwner)",
            "event Note(string indexed tag, bytes data, int256 delta, uint8 kind, bool ok, uint256[] list, bytes32 id)",
        ]);
        let t = contract_tables(&k).expect("tables");
        assert_eq!(t[0].name, "evt_token_transfer");
        assert_eq!(t[1].name, "evt_token_ownership_transferred");
        assert_eq!(t[1].columns[0].name, "previous_owner");
        let kinds: Vec<ColumnKind> = t[2].columns.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ColumnKind::TopicHash,
                ColumnKind::Bytes,
                ColumnKind::Big { signed: true },
                ColumnKind::Int,
                ColumnKind::Bool,
                ColumnKind::Json,
                ColumnKind::FixedBytes
            ]
        );
        assert_eq!(t[0].topic0, alloy_primitives::keccak256("Transfer(address,address,uint256)"));
    }

    #[test]
    fn bad_contracts_say_what_to_fix() {
        let mut k = contract(&["event Transfer(address indexed from, address indexed to, uint256 value)"]);
        k.name = "My Token".into();
        assert!(contract_tables(&k).expect_err("name").to_string().contains("lowercase"));
        let k = contract(&["event Broken(uint257 x)"]);
        assert!(contract_tables(&k).expect_err("type").to_string().contains("Broken"));
        let k = contract(&[]);
        assert!(contract_tables(&k).expect_err("none").to_string().contains("no events"));
        let k = contract(&["event A(uint256 block_number, uint256 value, uint256 value_dec)"]);
        let cols: Vec<String> = contract_tables(&k).expect("ok")[0].columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(cols, vec!["p_block_number", "value", "p_value_dec"]);
    }

    #[test]
    fn overloads_get_their_own_tables_and_abi_files_are_read() {
        let k = contract(&[
            "event Transfer(address indexed from, address indexed to, uint256 value)",
            "event Transfer(address indexed from, uint256 id)",
        ]);
        let t = contract_tables(&k).expect("tables");
        assert_ne!(t[0].name, t[1].name);
        assert!(t[0].name.starts_with("evt_token_transfer_"));
        let artifact = r#"{"abi": [{"type": "event", "name": "Approval", "anonymous": false, "inputs": [
            {"name": "owner", "type": "address", "indexed": true},
            {"name": "spender", "type": "address", "indexed": true},
            {"name": "value", "type": "uint256", "indexed": false}]},
            {"type": "function", "name": "approve", "inputs": [], "outputs": [], "stateMutability": "nonpayable"}]}"#;
        let e = abi_events(artifact).expect("abi");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].signature(), "Approval(address,address,uint256)");
        assert!(abi_events("[1, 2]").is_err());
    }

    #[test]
    fn snake_case_names() {
        assert_eq!(snake("Transfer"), "transfer");
        assert_eq!(snake("OwnershipTransferred"), "ownership_transferred");
        assert_eq!(snake("ERC20Transfer"), "erc20_transfer");
        assert_eq!(snake("tokenID"), "token_id");
        assert_eq!(snake("_from"), "from");
        assert_eq!(snake("2x"), "_2x");
    }
}
