//! Reading and rewriting JSON-RPC calls and answers for the fault proxy: what a call asks for,
//! local answers, the changes made to the upstream's answers (forged hashes, mutated or removed
//! fields, broken envelopes, capped heads), and damage to the finished bytes (BOM, duplicate
//! keys, deep nesting, invalid UTF-8, padding).

use serde_json::{Value, json};

use super::Fault;

/// The method of a call (empty when it has none).
pub(super) fn call_method(call: &Value) -> &str {
    call.get("method").and_then(Value::as_str).unwrap_or("")
}

pub(super) fn parse_quantity(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// The height a call names (`eth_getBlockByNumber` or `eth_getBlockReceipts` with a number).
pub(super) fn call_height(call: &Value) -> Option<u64> {
    if call_method(call) == "eth_getLogs" {
        return logs_range(call).map(|(_, to)| to);
    }
    if !matches!(call_method(call), "eth_getBlockByNumber" | "eth_getBlockReceipts") {
        return None;
    }
    call.get("params")?.get(0)?.as_str().and_then(parse_quantity)
}

/// The (fromBlock, toBlock) an `eth_getLogs` call asks for, when both are numbers.
pub(super) fn logs_range(call: &Value) -> Option<(u64, u64)> {
    if call_method(call) != "eth_getLogs" {
        return None;
    }
    let f = call.get("params")?.get(0)?;
    Some((parse_quantity(f.get("fromBlock")?.as_str()?)?, parse_quantity(f.get("toBlock")?.as_str()?)?))
}

/// The call asks for the head by tag (`latest`, `pending`, `safe`, `finalized`).
pub(super) fn is_head_tag(call: &Value) -> bool {
    matches!(
        call.get("params").and_then(|p| p.get(0)).and_then(Value::as_str),
        Some("latest" | "pending" | "safe" | "finalized")
    )
}

pub(super) fn answer(id: &Value, result: &Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub(super) fn error_answer(id: &Value, code: i32, message: &str, data: Option<&Value>) -> Value {
    let mut err = json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d.clone();
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": err })
}

/// Make a call ask for height `n` instead.
pub(super) fn set_height(call: &mut Value, n: u64) {
    if let Some(p) = call.get_mut("params").and_then(|p| p.get_mut(0)) {
        *p = Value::String(format!("{n:#x}"));
    }
}

fn random_hash() -> String {
    let mut s = String::from("0x");
    for _ in 0..32 {
        s.push_str(&format!("{:02x}", fastrand::u8(..)));
    }
    s
}

/// What to do with one call's upstream answer afterwards.
#[derive(Debug, Clone)]
pub(super) enum Post {
    None,
    Forge,
    Mutate(String, Value),
    Remove(String),
    WrongId,
    IdAsString,
    Envelope(String, Option<Value>),
    /// Null the block if it is above this served head.
    CapHead(u64),
}

impl Post {
    /// The rewrite a fault asks for (None for faults handled elsewhere).
    pub(super) fn of(fault: &Fault) -> Self {
        match fault {
            Fault::Remove { field } => Self::Remove(field.clone()),
            Fault::ForgedHash => Self::Forge,
            Fault::Mutate { field, value } => Self::Mutate(field.clone(), value.clone()),
            Fault::WrongId => Self::WrongId,
            Fault::IdAsString => Self::IdAsString,
            Fault::Envelope { field, value } => Self::Envelope(field.clone(), value.clone()),
            _ => Self::None,
        }
    }

    /// Rewrite one answer.
    pub(super) fn apply(&self, a: &mut Value) {
        match self {
            Self::None => {}
            Self::Forge => {
                if let Some(r) = a.get_mut("result").filter(|r| r.is_object()) {
                    r["hash"] = Value::String(random_hash());
                }
            }
            Self::Mutate(field, value) => {
                // A pointer reaches into arrays too (`/0/logs/1/data` of a receipts list).
                if let Some(r) = a.get_mut("result") {
                    if field.starts_with('/') {
                        if let Some(slot) = r.pointer_mut(field) {
                            *slot = value.clone();
                        }
                    } else if r.is_object() {
                        r[field.as_str()] = value.clone();
                    }
                }
            }
            Self::Remove(field) => {
                if let Some(r) = a.get_mut("result") {
                    remove(r, field);
                }
            }
            Self::WrongId => {
                let wrong = match a.get("id") {
                    Some(Value::Number(n)) => json!(n.as_u64().unwrap_or(0).wrapping_add(1_000_003)),
                    _ => json!("wrong-id"),
                };
                a["id"] = wrong;
            }
            Self::IdAsString => {
                let id = a.get("id").map(Value::to_string).unwrap_or_default();
                a["id"] = Value::String(id);
            }
            Self::Envelope(field, value) => {
                if let Some(obj) = a.as_object_mut() {
                    match value {
                        Some(v) => {
                            obj.insert(field.clone(), v.clone());
                        }
                        None => {
                            obj.remove(field);
                        }
                    }
                }
            }
            Self::CapHead(served) => {
                let above = a
                    .get("result")
                    .and_then(|r| r.get("number"))
                    .and_then(Value::as_str)
                    .and_then(parse_quantity)
                    .is_some_and(|n| n > *served);
                if above {
                    a["result"] = Value::Null;
                }
            }
        }
    }
}

/// Remove a member (`field`) or what a JSON pointer (`/transactions/0/hash`) names.
fn remove(r: &mut Value, field: &str) {
    let (parent, key) = match field.rsplit_once('/') {
        Some((p, k)) if field.starts_with('/') => (r.pointer_mut(p), k.to_string()),
        _ => (Some(r), field.to_string()),
    };
    match parent {
        Some(Value::Object(obj)) => {
            obj.remove(&key);
        }
        Some(Value::Array(arr)) => {
            if let Ok(i) = key.parse::<usize>()
                && i < arr.len()
            {
                arr.remove(i);
            }
        }
        _ => {}
    }
}

/// The answers as the response body's value: a batch (every answer twice when `duplicate`),
/// or the single answer.
pub(super) fn assemble(answers: Vec<Option<Value>>, batch: bool, duplicate: bool) -> Value {
    if !batch {
        return answers.into_iter().next().flatten().unwrap_or(Value::Null);
    }
    let items: Vec<Value> = answers.into_iter().flatten().collect();
    if duplicate {
        Value::Array(items.iter().flat_map(|a| [a.clone(), a.clone()]).collect())
    } else {
        Value::Array(items)
    }
}

/// Damage the finished body's bytes as `fault` says (nothing for other faults).
pub(super) fn damage(body: &mut Vec<u8>, fault: &Fault) {
    match fault {
        Fault::Bom => body.splice(0..0, [0xEF, 0xBB, 0xBF]).for_each(drop),
        Fault::DuplicateKey { field, value } => {
            let extra = format!("{}:{},", Value::String(field.clone()), value);
            insert_after(body, b"\"result\":{", extra.as_bytes());
        }
        Fault::DeepNesting { depth } => {
            let extra = format!("\"deep\":{}{},", "[".repeat(*depth), "]".repeat(*depth));
            insert_after(body, b"\"result\":{", extra.as_bytes());
        }
        Fault::InvalidUtf8 => {
            // Inside the first string value: `"0x…` becomes `"\xff0x…`.
            if let Some(pos) = body.windows(3).position(|w| w == b"\"0x") {
                body.insert(pos + 1, 0xFF);
            }
        }
        _ => {}
    }
}

/// The body padded with `bytes` of filler in its (first) object.
pub(super) fn pad(mut out: Value, bytes: usize) -> Value {
    if let Some(obj) = out.as_object_mut() {
        obj.insert("padding".into(), Value::String("x".repeat(bytes)));
    } else if let Some(Value::Object(first)) = out.as_array_mut().and_then(|a| a.first_mut()) {
        first.insert("padding".into(), Value::String("x".repeat(bytes)));
    }
    out
}

/// Insert `extra` right after the first occurrence of `marker` in `body` (if any).
fn insert_after(body: &mut Vec<u8>, marker: &[u8], extra: &[u8]) {
    if let Some(pos) = body.windows(marker.len()).position(|w| w == marker) {
        let at = pos + marker.len();
        body.splice(at..at, extra.iter().copied()).for_each(drop);
    }
}
