//! The outbox: the messages a broker sink publishes next, read from the SQLite file. The chain
//! tables are the outbox: from the sink's position (the last block acknowledged) it walks the
//! canonical chain forward; when that block left the canonical chain it first emits one `reorg`
//! message naming every dropped height, hash and log id. Nothing here knows the broker, so a
//! Kafka sink would read the same steps.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::SinkError;
use crate::config::{PublishWhen, SinkKind};
use crate::store::{BlockAt, BlockRow, Kept, Store};

/// Blocks read per step.
const PAGE: u32 = 64;

/// One message to publish: subject suffix (after `prefix.chain_id.`), id, payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`: `chain:kind:height:hash[:index]`.
    pub id: String,
    pub payload: String,
}

/// What to publish next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing new.
    Idle,
    /// These messages, in order; once all are acknowledged the position is `to` (and the
    /// blocks of `undone` were undone once more: a reorg message).
    Batch { messages: Vec<Outgoing>, to: (u64, B256), blocks: u64, undone: Vec<B256>, committed_ms: Vec<(u64, i64)> },
}

/// The outbox over one store.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub store: Store,
    /// The sink's name (its undo records).
    pub sink: String,
    pub chain_id: u64,
    pub kinds: Vec<SinkKind>,
    pub publish: PublishWhen,
    pub confirmations: u64,
    /// The decoded tables, for `events`.
    pub index: std::sync::Arc<crate::index::Indexing>,
}

#[derive(Serialize)]
struct Link {
    number: u64,
    hash: B256,
}

#[derive(Serialize)]
struct Dropped {
    number: u64,
    hash: B256,
    /// `number:hash:log_index` of each of its logs (the ids of their `log` messages).
    log_ids: Vec<String>,
}

#[derive(Serialize)]
struct ReorgMessage {
    #[serde(rename = "type")]
    kind: &'static str,
    chain_id: u64,
    fork: Link,
    old_tip: Link,
    new_tip: Option<Link>,
    /// Ascending by height.
    dropped: Vec<Dropped>,
}

#[derive(Deserialize)]
struct BlockTxs<'a> {
    #[serde(borrow, default)]
    transactions: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct LogAddress {
    address: alloy_primitives::Address,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogParts {
    address: alloy_primitives::Address,
    topics: Vec<B256>,
    data: alloy_primitives::Bytes,
    transaction_hash: B256,
}

#[derive(Serialize)]
struct EventMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    chain_id: u64,
    block_number: u64,
    block_hash: B256,
    log_index: usize,
    table: &'a str,
    contract: &'a str,
    event: &'a str,
    address: alloy_primitives::Address,
    transaction_hash: B256,
    values: Option<serde_json::Map<String, serde_json::Value>>,
    error: Option<String>,
}

/// The id suffix of something told again after `times` undos (none the first time).
fn redo_suffix(times: u32) -> String {
    if times > 0 { format!(":redo{times}") } else { String::new() }
}

fn data(e: impl std::fmt::Display) -> SinkError {
    SinkError::Data(e.to_string())
}

impl Outbox {
    /// The messages after `cursor` (`None`: nothing published yet; start at the first stored
    /// canonical block) up to the stored head `tip`.
    pub async fn next(&self, cursor: Option<(u64, B256)>, tip: (u64, B256)) -> Result<Step, SinkError> {
        if let Some((n, h)) = cursor
            && self.store.canonical_hash_at(n).await?.map(B256::from) != Some(h)
        {
            if self.publish == PublishWhen::Final {
                return Err(SinkError::FinalUndone { number: n, hash: h });
            }
            return self.reorg(n, h, tip).await;
        }
        let last = match self.publish {
            PublishWhen::Canonical => tip.0,
            PublishWhen::Final => match tip.0.checked_sub(self.confirmations) {
                Some(l) => l,
                None => return Ok(Step::Idle),
            },
        };
        let next = cursor.map_or(0, |(n, _)| n + 1);
        if next > last {
            return Ok(Step::Idle);
        }
        let rows = self.store.blocks_range(next, last, PAGE, false).await?;
        let undid_any = self.store.sink_undid_any(&self.sink).await?;
        let mut messages = Vec::new();
        let mut to = None;
        let mut prev = cursor;
        let mut committed_ms = Vec::new();
        for b in rows {
            let hash: B256 = b.hash.parse().map_err(data)?;
            let linked = prev.is_none_or(|(_, ph)| b.parent_hash.parse::<B256>().is_ok_and(|p| p == ph));
            // A hole (repair fills it) or a branch changing under us: stop here, look again.
            if prev.is_some_and(|(pn, _)| b.number != pn + 1) || !linked {
                break;
            }
            let redo = if undid_any { self.store.sink_undone(&self.sink, hash).await? } else { 0 };
            self.block_messages(&b, hash, redo, &mut messages)?;
            committed_ms.push((b.number, b.fetched_at_ms));
            prev = Some((b.number, hash));
            to = prev;
        }
        Ok(match to {
            Some(to) => Step::Batch { messages, blocks: to.0 + 1 - next, to, undone: Vec::new(), committed_ms },
            None => Step::Idle,
        })
    }

    /// The block's messages; `redo` > 0: it was undone that many times before and is
    /// canonical again, so its ids get `:redo<redo>` (the broker would drop the old ones).
    fn block_messages(&self, b: &BlockRow, hash: B256, redo: u32, out: &mut Vec<Outgoing>) -> Result<(), SinkError> {
        let c = self.chain_id;
        let kept = self.store.kept_json(BlockAt::Hash(hash), Kept::Block)?.ok_or_else(|| {
            SinkError::Data(format!("block {}'s JSON is not kept ([index] raw_json); the sink needs it", b.number))
        })?;
        let block = kept.json.text().map_err(data)?;
        let receipts = match self.store.kept_json(BlockAt::Hash(hash), Kept::Receipts)? {
            Some(k) => Some(k.json.text().map_err(data)?),
            None => None,
        };
        let again = redo_suffix(redo);
        let id = |kind: &str, i: Option<usize>| match i {
            Some(i) => format!("{c}:{kind}:{}:{hash}:{i}{again}", b.number),
            None => format!("{c}:{kind}:{}:{hash}{again}", b.number),
        };
        out.push(Outgoing {
            subject: "blocks".into(),
            id: id("block", None),
            payload: format!(
                r#"{{"type":"block","chain_id":{c},"number":{},"hash":"{hash}","parent_hash":"{}","block":{block},"receipts":{}}}"#,
                b.number,
                b.parent_hash,
                receipts.as_deref().unwrap_or("null")
            ),
        });
        if self.kinds.contains(&SinkKind::Txs) {
            let txs: BlockTxs<'_> = serde_json::from_str(&block).map_err(data)?;
            for (i, tx) in txs.transactions.iter().enumerate().filter(|(_, t)| t.get().starts_with('{')) {
                out.push(Outgoing {
                    subject: "txs".into(),
                    id: id("tx", Some(i)),
                    payload: format!(
                        r#"{{"type":"tx","chain_id":{c},"block_number":{},"block_hash":"{hash}","index":{i},"tx":{}}}"#,
                        b.number,
                        tx.get()
                    ),
                });
            }
        }
        let (logs, events) = (self.kinds.contains(&SinkKind::Logs), self.kinds.contains(&SinkKind::Events));
        if (logs || events) && b.tx_count > 0 {
            let text = receipts.as_deref().ok_or_else(|| {
                SinkError::Data(format!("block {}'s receipts are not kept; publishing logs needs them", b.number))
            })?;
            let all = crate::rawjson::receipt_logs(text).map_err(data)?;
            // Each log parsed once: in full when events are published, else its address only.
            let parts: Option<Vec<LogParts>> = match events {
                true => {
                    Some(all.iter().map(|l| serde_json::from_str(l.get())).collect::<Result<_, _>>().map_err(data)?)
                }
                false => None,
            };
            if logs {
                for (i, log) in all.iter().enumerate() {
                    let address = match parts.as_ref().and_then(|p| p.get(i)) {
                        Some(p) => p.address,
                        None => serde_json::from_str::<LogAddress>(log.get()).map_err(data)?.address,
                    };
                    out.push(Outgoing {
                        subject: format!("logs.{}", alloy_primitives::hex::encode_prefixed(address)),
                        id: id("log", Some(i)),
                        payload: format!(
                            r#"{{"type":"log","chain_id":{c},"block_number":{},"block_hash":"{hash}","log_index":{i},"log":{}}}"#,
                            b.number,
                            log.get()
                        ),
                    });
                }
            }
            for (i, l) in parts.iter().flatten().enumerate() {
                self.event_messages(b.number, hash, i, l, &again, out)?;
            }
        }
        Ok(())
    }

    /// One `event` message per decoded table the log belongs to (a log that fails to decode
    /// is published with its error, as the table keeps a decode error).
    fn event_messages(
        &self,
        number: u64,
        hash: B256,
        i: usize,
        l: &LogParts,
        again: &str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), SinkError> {
        for t in self.index.tables_for(&l.address, l.topics.first(), number) {
            let Some(table) = self.index.tables.get(usize::from(t)) else { continue };
            let parts = alloy_primitives::LogData::new_unchecked(l.topics.clone(), l.data.clone());
            let (values, error) = match table.decode_json(&parts) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e)),
            };
            let m = EventMessage {
                kind: "event",
                chain_id: self.chain_id,
                block_number: number,
                block_hash: hash,
                log_index: i,
                table: &table.name,
                contract: &table.contract,
                event: &table.event.name,
                address: l.address,
                transaction_hash: l.transaction_hash,
                values,
                error,
            };
            out.push(Outgoing {
                subject: format!("events.{}", table.name),
                id: format!("{}:event:{number}:{hash}:{i}:{}{again}", self.chain_id, table.name),
                payload: serde_json::to_string(&m).map_err(data)?,
            });
        }
        Ok(())
    }

    /// The cursor block `(n, h)` left the canonical chain: one `reorg` message, then the
    /// position is the fork point.
    async fn reorg(&self, n: u64, h: B256, tip: (u64, B256)) -> Result<Step, SinkError> {
        let Some(branch) = self.store.dropped_branch(&h.0).await? else {
            return Err(SinkError::Data(format!(
                "published block {n} {h} is no longer stored; cannot tell what to undo"
            )));
        };
        let (f, fh) = (branch.fork.0, B256::from(branch.fork.1));
        let mut dropped = Vec::with_capacity(branch.blocks.len());
        for b in branch.blocks.iter().rev() {
            let at: B256 = b.hash.parse().map_err(data)?;
            let count = match self.store.kept_json(BlockAt::Hash(at), Kept::Receipts)? {
                Some(k) => crate::rawjson::receipt_logs(&k.json.text().map_err(data)?).map_err(data)?.len(),
                None => 0,
            };
            dropped.push(Dropped {
                number: b.number,
                hash: at,
                log_ids: (0..count).map(|i| format!("{}:{at}:{i}", b.number)).collect(),
            });
        }
        let msg = ReorgMessage {
            kind: "reorg",
            chain_id: self.chain_id,
            fork: Link { number: f, hash: fh },
            old_tip: Link { number: n, hash: h },
            new_tip: Some(Link { number: tip.0, hash: tip.1 }),
            dropped,
        };
        let payload = serde_json::to_string(&msg).map_err(data)?;
        // A tip undone before (A → B → A → B) tells this reorg under a new id.
        let again = redo_suffix(self.store.sink_undone(&self.sink, h).await?);
        let id = format!("{}:reorg:{f}:{h}{again}", self.chain_id);
        let undone = msg.dropped.iter().map(|d| d.hash).collect();
        let messages = vec![Outgoing { subject: "reorgs".into(), id, payload }];
        Ok(Step::Batch { messages, to: (f, fh), blocks: 0, undone, committed_ms: Vec::new() })
    }
}
