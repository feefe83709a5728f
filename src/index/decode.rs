//! Decoding one log into one decoded table's row, strictly: the topic count and topic0 must be
//! the event's, every indexed word must be a valid value of its type, and the data must be the
//! canonical ABI encoding (decoded, then encoded again to the same bytes). A log that fails
//! gives an error text, stored as a decode error; it never stops ingest.

use alloy_dyn_abi::{DynSolType, DynSolValue, Specifier};
use alloy_primitives::{B256, I256, LogData, U256, hex};
use serde_json::Value;

use super::abi::{ColumnKind, EventTable};

/// A value as bound into SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One log's row in one decoded table (`table` indexes [`super::Indexing::tables`]), or why
/// it could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedLog {
    pub table: u16,
    pub log_index: u32,
    /// The parameter columns in order (a wide integer gives two: its sortable form, then its
    /// decimal text).
    pub values: Result<Vec<SqlValue>, String>,
}

impl EventTable {
    /// Decode `log` as this table's event.
    pub fn decode(&self, log: &LogData) -> Result<Vec<SqlValue>, String> {
        let mut out = Vec::with_capacity(self.columns.len() + 2);
        for (c, v) in self.columns.iter().zip(self.checked_values(log)?) {
            push_value(&mut out, c.kind, &v)?;
        }
        Ok(out)
    }

    /// Decode `log` as this table's event (as strictly as [`Self::decode`]) into an object of
    /// parameter name → value: integers as decimal strings, addresses, bytes and hashes as `0x`
    /// hex, arrays and tuples as arrays (what the broker sink's `event` messages carry).
    pub fn decode_json(&self, log: &LogData) -> Result<serde_json::Map<String, Value>, String> {
        let values = self.checked_values(log)?;
        Ok(self.columns.iter().zip(values).map(|(c, v)| (c.name.clone(), json(&v))).collect())
    }

    /// Every parameter's value in column order, after the strict checks.
    fn checked_values(&self, log: &LogData) -> Result<Vec<DynSolValue>, String> {
        let decoded =
            self.resolved.decode_log_parts(log.topics().iter().copied(), &log.data).map_err(|e| e.to_string())?;
        // The indexed words the decoder took as they are: check them as their types.
        let indexed_types = self.event.inputs.iter().filter(|p| p.indexed);
        for (k, (p, topic)) in indexed_types.zip(log.topics().iter().skip(1)).enumerate() {
            let ty: DynSolType = p.resolve().map_err(|e| e.to_string())?;
            valid_word(&ty, topic).map_err(|why| format!("indexed parameter {k} ({}): {why}", p.ty))?;
        }
        let body = DynSolValue::Tuple(decoded.body.clone());
        if body.abi_encode_sequence().as_deref().unwrap_or_default() != log.data.as_ref() {
            return Err(format!(
                "data ({} bytes) is not the canonical ABI encoding of the event's values",
                log.data.len()
            ));
        }
        let mut indexed = decoded.indexed.into_iter();
        let mut body = decoded.body.into_iter();
        self.columns
            .iter()
            .map(|c| {
                let v = if c.indexed { indexed.next() } else { body.next() };
                v.ok_or_else(|| format!("no value for {}", c.name))
            })
            .collect()
    }
}

/// Whether a 32-byte topic is a valid encoding of a value of `ty` (static types only; a
/// dynamic type's topic is a hash, anything goes).
fn valid_word(ty: &DynSolType, w: &B256) -> Result<(), String> {
    let u = U256::from_be_bytes(w.0);
    let ok = match ty {
        DynSolType::Address => w[..12].iter().all(|b| *b == 0),
        DynSolType::Bool => u <= U256::from(1),
        DynSolType::Uint(bits) => *bits == 256 || u >> *bits == U256::ZERO,
        DynSolType::Int(bits) => {
            let i = I256::from_raw(u);
            *bits == 256 || (i >= I256::MIN >> (256 - *bits) && i <= I256::MAX >> (256 - *bits))
        }
        DynSolType::FixedBytes(n) => w[*n..].iter().all(|b| *b == 0),
        _ => true,
    };
    if ok { Ok(()) } else { Err(format!("{w} is not a valid {ty}")) }
}

fn push_value(out: &mut Vec<SqlValue>, kind: ColumnKind, v: &DynSolValue) -> Result<(), String> {
    let mismatch = || format!("a {kind:?} column got {v:?}");
    match (kind, v) {
        (ColumnKind::Address, DynSolValue::Address(a)) => out.push(SqlValue::Blob(a.to_vec())),
        (ColumnKind::Bool, DynSolValue::Bool(b)) => out.push(SqlValue::Int(i64::from(*b))),
        (ColumnKind::Int, DynSolValue::Uint(u, _)) => {
            out.push(SqlValue::Int(i64::try_from(*u).map_err(|_| mismatch())?))
        }
        (ColumnKind::Int, DynSolValue::Int(i, _)) => {
            out.push(SqlValue::Int(i64::try_from(*i).map_err(|_| mismatch())?))
        }
        (ColumnKind::Big { .. }, DynSolValue::Uint(u, _)) => {
            out.push(sortable_unsigned(*u));
            out.push(SqlValue::Text(u.to_string()));
        }
        (ColumnKind::Big { .. }, DynSolValue::Int(i, _)) => {
            out.push(sortable_signed(*i));
            out.push(SqlValue::Text(i.to_string()));
        }
        (ColumnKind::FixedBytes | ColumnKind::TopicHash, DynSolValue::FixedBytes(w, n)) => {
            out.push(SqlValue::Blob(w[..*n].to_vec()));
        }
        (ColumnKind::FixedBytes, DynSolValue::Function(f)) => out.push(SqlValue::Blob(f.to_vec())),
        (ColumnKind::Bytes, DynSolValue::Bytes(b)) => out.push(SqlValue::Blob(b.clone())),
        (ColumnKind::Text, DynSolValue::String(s)) => out.push(SqlValue::Text(s.clone())),
        (ColumnKind::Json, v) => out.push(SqlValue::Text(json(v).to_string())),
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// An unsigned value as INTEGER when it fits i64, else as `0x` + 64 hex digits: integers sort
/// before text in SQLite, and fixed-width lowercase hex sorts as the numbers do.
pub fn sortable_unsigned(u: U256) -> SqlValue {
    match i64::try_from(u) {
        Ok(i) => SqlValue::Int(i),
        Err(_) => SqlValue::Text(format!("{u:#066x}")),
    }
}

/// A signed value: INTEGER within i64, 0x + 64 hex digits above it, REAL below it (REAL compares
/// exactly with integers and sorts below them; only values under -2^63 closer than a double's
/// precision can tie).
pub fn sortable_signed(i: I256) -> SqlValue {
    if let Ok(v) = i64::try_from(i) {
        return SqlValue::Int(v);
    }
    if i.is_positive() {
        return SqlValue::Text(format!("{:#066x}", i.into_raw()));
    }
    // Exact decimal text parses to the nearest double.
    SqlValue::Real(i.to_string().parse::<f64>().unwrap_or(f64::MIN))
}

/// JSON for arrays and tuples: integers as decimal strings (they pass 2^53), bytes as 0x hex.
fn json(v: &DynSolValue) -> Value {
    match v {
        DynSolValue::Address(a) => Value::String(a.to_string().to_ascii_lowercase()),
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Int(i, _) => Value::String(i.to_string()),
        DynSolValue::Uint(u, _) => Value::String(u.to_string()),
        DynSolValue::FixedBytes(w, n) => Value::String(hex::encode_prefixed(&w[..*n])),
        DynSolValue::Function(f) => Value::String(hex::encode_prefixed(f.as_slice())),
        DynSolValue::Bytes(b) => Value::String(hex::encode_prefixed(b)),
        DynSolValue::String(s) => Value::String(s.clone()),
        DynSolValue::Array(a) | DynSolValue::FixedArray(a) | DynSolValue::Tuple(a) => {
            Value::Array(a.iter().map(json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContractConfig, IndexConfig};
    use crate::index::Indexing;
    use alloy_primitives::{Address, Bytes};

    fn table(sig: &str) -> EventTable {
        let c = IndexConfig {
            contracts: vec![ContractConfig {
                name: "t".into(),
                address: vec!["0x00000000000000000000000000000000000000aa".into()],
                events: vec![sig.into()],
                ..ContractConfig::default()
            }],
            ..IndexConfig::default()
        };
        Indexing::from_config(&c, true).expect("indexing").tables.remove(0)
    }

    fn word(u: U256) -> B256 {
        B256::from(u.to_be_bytes::<32>())
    }

    #[test]
    fn a_transfer_decodes_and_wide_values_sort() {
        let t = table("event Transfer(address indexed from, address indexed to, uint256 value)");
        let from: Address = "0x00000000000000000000000000000000000000f1".parse().expect("a");
        let big = U256::from(10).pow(U256::from(19));
        let log = LogData::new_unchecked(
            vec![t.topic0, from.into_word(), Address::ZERO.into_word()],
            Bytes::from(big.to_be_bytes::<32>().to_vec()),
        );
        let v = t.decode(&log).expect("decodes");
        assert_eq!(v[0], SqlValue::Blob(from.to_vec()));
        assert_eq!(v[2], SqlValue::Text(format!("{big:#066x}")));
        assert_eq!(v[3], SqlValue::Text("10000000000000000000".into()));
        assert_eq!(sortable_unsigned(U256::from(9)), SqlValue::Int(9));
        assert!(matches!(sortable_signed(I256::MIN), SqlValue::Real(r) if r < -5e76));
    }

    #[test]
    fn malformed_logs_are_errors_not_panics() {
        let t = table("event Transfer(address indexed from, address indexed to, uint256 value)");
        let value = Bytes::from(U256::from(5).to_be_bytes::<32>().to_vec());
        let dirty = B256::repeat_byte(0xff);
        let cases = [
            LogData::new_unchecked(vec![t.topic0, B256::ZERO], value.clone()),
            LogData::new_unchecked(vec![t.topic0, dirty, B256::ZERO], value.clone()),
            LogData::new_unchecked(vec![t.topic0, B256::ZERO, B256::ZERO], Bytes::from(vec![1, 2, 3])),
            LogData::new_unchecked(
                vec![t.topic0, B256::ZERO, B256::ZERO],
                Bytes::from([value.to_vec(), vec![0; 32]].concat()),
            ),
            LogData::new_unchecked(vec![B256::ZERO, B256::ZERO, B256::ZERO], value),
        ];
        for (i, log) in cases.iter().enumerate() {
            assert!(t.decode(log).is_err(), "case {i} decoded");
        }
        let b = table("event Flag(bool indexed on, uint8 indexed small)");
        let log = LogData::new_unchecked(vec![b.topic0, word(U256::from(2)), word(U256::from(1))], Bytes::new());
        assert!(b.decode(&log).expect_err("bool 2").contains("bool"));
        let log = LogData::new_unchecked(vec![b.topic0, word(U256::from(1)), word(U256::from(256))], Bytes::new());
        assert!(b.decode(&log).expect_err("uint8 256").contains("uint8"));
    }

    #[test]
    fn dynamic_values_arrays_and_indexed_hashes() {
        let t = table("event Note(string indexed tag, string text, uint256[] list, int256 delta)");
        let body = DynSolValue::Tuple(vec![
            DynSolValue::String("hi".into()),
            DynSolValue::Array(vec![DynSolValue::Uint(U256::from(1), 256), DynSolValue::Uint(U256::from(2), 256)]),
            DynSolValue::Int(I256::try_from(-3).expect("i"), 256),
        ]);
        let h = alloy_primitives::keccak256("tag");
        let log = LogData::new_unchecked(vec![t.topic0, h], Bytes::from(body.abi_encode_sequence().expect("enc")));
        let v = t.decode(&log).expect("decodes");
        assert_eq!(v[0], SqlValue::Blob(h.to_vec()));
        assert_eq!(v[1], SqlValue::Text("hi".into()));
        assert_eq!(v[2], SqlValue::Text(r#"["1","2"]"#.into()));
        assert_eq!((v[3].clone(), v[4].clone()), (SqlValue::Int(-3), SqlValue::Text("-3".into())));
    }
}
