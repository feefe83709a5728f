//! Apply a sink's messages, in stream order, to a blockstreamer SQLite file: each block is
//! checked again (header hash, receipts root) and appended; a `reorg` undoes by hash; the
//! stream position is committed in the same transaction as what the messages changed.

use alloy_primitives::B256;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ConsumeError;
use crate::index::Indexing;
use crate::model::{Block, ChainLink, CommitBatch, ProviderId, Reorg};
use crate::provider::receipts::{ReceiptsOf, decode_block_receipts};
use crate::provider::wire::{DecodeOptions, Want, decode_block};
use crate::store::{ConsumerPosition, Store};

/// Blocks applied per transaction at most.
const MAX_BATCH: usize = 64;

/// The provider id blocks applied from a stream are recorded under (its `providers` row is
/// `nats:STREAM`).
pub const STREAM_PROVIDER: ProviderId = ProviderId(0);

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    chain_id: u64,
}

#[derive(Deserialize)]
struct BlockMessage<'a> {
    number: u64,
    hash: B256,
    parent_hash: B256,
    #[serde(borrow)]
    block: &'a RawValue,
    #[serde(borrow)]
    receipts: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Link {
    number: u64,
    hash: B256,
}

#[derive(Deserialize)]
struct Dropped {
    number: u64,
    hash: B256,
}

#[derive(Deserialize)]
struct ReorgMessage {
    fork: Link,
    old_tip: Link,
    new_tip: Option<Link>,
    dropped: Vec<Dropped>,
}

/// What applying has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub messages: u64,
    pub blocks: u64,
    /// Blocks that were already held (a message told again) and skipped.
    pub skipped: u64,
    pub reorgs: u64,
    pub undone: u64,
}

/// Applies one stream into one store.
#[derive(Debug)]
pub struct Applier {
    store: Store,
    stream: String,
    index: Indexing,
    chain_id: Option<u64>,
    /// The file's canonical tip including the unflushed batch.
    tip: Option<(u64, B256)>,
    batch: Vec<Block>,
    position: ConsumerPosition,
    flushed: ConsumerPosition,
    pub applied: Applied,
}

impl Applier {
    /// Over `store` (migrated, with the stream's provider registered), for `stream`.
    pub async fn new(store: Store, stream: &str, index: Indexing) -> Result<Self, ConsumeError> {
        let position = store.consumer_position(stream).await?;
        let tip = store.stored_tip().await?.map(|t| (t.number, B256::from(t.hash)));
        let chain_id = store.meta("chain_id").await?.map(|c| crate::types::from_sql("chain id", c)).transpose()?;
        Ok(Self {
            store,
            stream: stream.to_string(),
            index,
            chain_id,
            tip,
            batch: Vec::new(),
            position,
            flushed: position,
            applied: Applied::default(),
        })
    }

    /// The stream sequence of the last message applied (committed or not).
    pub fn position(&self) -> ConsumerPosition {
        self.position
    }

    /// Apply the message at stream sequence `seq`. Blocks are held back until [`Self::flush`]
    /// (or a full batch); an error names the message and leaves the file as it was before it.
    pub async fn apply(&mut self, seq: u64, payload: &[u8]) -> Result<(), ConsumeError> {
        if seq <= self.position.stream_seq {
            return Ok(());
        }
        let bad = |why: String| ConsumeError::Message { seq, why };
        let text = std::str::from_utf8(payload).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        let kind: Kind<'_> = serde_json::from_str(text).map_err(|e| bad(format!("no type/chain_id: {e}")))?;
        self.check_chain(kind.chain_id).await.map_err(bad)?;
        match kind.kind {
            "block" => {
                let m: BlockMessage<'_> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                self.block(&m).await.map_err(bad)?;
            }
            "reorg" => {
                let m: ReorgMessage = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                self.flush().await?;
                self.reorg(&m).await?;
            }
            // Carried by their block message (full transactions and receipts); events are
            // decoded again here by this file's own [index] contracts.
            "tx" | "log" | "event" => {}
            other => return Err(bad(format!("unknown message type {other:?}"))),
        }
        self.position = ConsumerPosition { stream_seq: seq, messages: self.position.messages + 1 };
        self.applied.messages += 1;
        if self.batch.len() >= MAX_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn check_chain(&mut self, chain: u64) -> Result<(), String> {
        match self.chain_id {
            Some(c) if c != chain => Err(format!("a message of chain {chain}; this file holds chain {c}")),
            Some(_) => Ok(()),
            None => {
                let v = crate::types::to_sql("chain id", chain).map_err(|e| e.to_string())?;
                self.store.set_meta("chain_id", v).await.map_err(|e| e.to_string())?;
                self.chain_id = Some(chain);
                Ok(())
            }
        }
    }

    async fn block(&mut self, m: &BlockMessage<'_>) -> Result<(), String> {
        if let Some((tn, th)) = self.tip {
            if m.number <= tn {
                let held = self.held_hash(m.number).await?;
                if held == Some(m.hash) {
                    self.applied.skipped += 1;
                    return Ok(());
                }
                return Err(format!(
                    "block {} {} arrived while this file holds {} at that height and no reorg message undid it",
                    m.number,
                    m.hash,
                    held.map_or_else(|| "nothing".into(), |h| h.to_string())
                ));
            }
            if m.number > tn + 1 {
                return Err(format!("block {} arrived after {tn}: the stream skips heights", m.number));
            }
            if m.parent_hash != th {
                return Err(format!(
                    "block {}'s parent is {} but this file's block {tn} is {th}",
                    m.number, m.parent_hash
                ));
            }
        }
        let b = self.decode(m)?;
        self.tip = Some((b.number, b.hash));
        self.batch.push(b);
        self.applied.blocks += 1;
        Ok(())
    }

    /// The block's JSON and receipts checked as ingest checks a provider's answer.
    fn decode(&self, m: &BlockMessage<'_>) -> Result<Block, String> {
        let opts = DecodeOptions { full_transactions: true, verify_header_hash: true, keep_raw: true };
        let mut b = decode_block(m.block.get(), Want::Hash(m.hash), opts, STREAM_PROVIDER)
            .map_err(|e| format!("block {} {}: {e}", m.number, m.hash))?;
        if b.number != m.number || b.parent_hash != m.parent_hash {
            return Err(format!("block {} {}: the message's number or parent differs from its JSON", m.number, m.hash));
        }
        if b.hash_verified == Some(false) {
            return Err(format!("block {} {}: the header does not hash to it", m.number, m.hash));
        }
        if let Some(r) = m.receipts.filter(|r| r.get() != "null") {
            let hashes: Vec<B256> = b.transactions.iter().map(|t| t.hash).collect();
            let of = ReceiptsOf::of(&b, &hashes);
            b.receipts = Some(
                decode_block_receipts(r.get(), of, STREAM_PROVIDER)
                    .map_err(|e| format!("block {} {}'s receipts: {e}", m.number, m.hash))?,
            );
        }
        if !self.index.tables.is_empty() {
            crate::ingest::enrich::decode(&self.index, std::slice::from_mut(&mut b));
        }
        Ok(b)
    }

    /// The canonical hash this file holds (or is about to) at `n`.
    async fn held_hash(&self, n: u64) -> Result<Option<B256>, String> {
        if let Some(b) = self.batch.iter().find(|b| b.number == n) {
            return Ok(Some(b.hash));
        }
        Ok(self.store.canonical_hash_at(n).await.map_err(|e| e.to_string())?.map(B256::from))
    }

    /// Undo by hash: from the lowest dropped block this file holds, everything above its
    /// parent leaves the canonical chain. Blocks it never got (or already undid) are ignored.
    async fn reorg(&mut self, m: &ReorgMessage) -> Result<(), ConsumeError> {
        self.applied.reorgs += 1;
        let mut first = None;
        for d in &m.dropped {
            if self.store.canonical_hash_at(d.number).await?.map(B256::from) == Some(d.hash) {
                first = Some(d.number);
                break;
            }
        }
        let (Some(first), Some((tn, th))) = (first, self.tip) else { return Ok(()) };
        let fork_n = first.saturating_sub(1);
        let fork_h = match self.store.canonical_hash_at(fork_n).await? {
            Some(h) => B256::from(h),
            None => m.fork.hash,
        };
        let new_tip = m.new_tip.as_ref().unwrap_or(&m.fork);
        let reorg = Reorg {
            detected_at_ms: crate::types::now_ms(),
            depth: tn - fork_n,
            fork: ChainLink { number: fork_n, hash: fork_h },
            old_tip: ChainLink { number: tn, hash: th },
            new_tip: ChainLink { number: new_tip.number, hash: new_tip.hash },
            provider: STREAM_PROVIDER,
        };
        tracing::info!(fork = fork_n, old_tip = m.old_tip.number, undone = tn - fork_n, "reorg applied");
        self.applied.undone += tn - fork_n;
        let batch = CommitBatch { reorg: Some(reorg), blocks: Vec::new() };
        self.store.commit_consumed(&[batch], &self.stream, self.position).await?;
        self.flushed = self.position;
        self.tip = (first > 0).then_some((fork_n, fork_h));
        Ok(())
    }

    /// Commit the held blocks and the position (nothing to do when both are committed).
    pub async fn flush(&mut self) -> Result<(), ConsumeError> {
        if self.batch.is_empty() && self.position == self.flushed {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.batch);
        let batches = [CommitBatch { reorg: None, blocks }];
        self.store.commit_consumed(&batches, &self.stream, self.position).await?;
        self.flushed = self.position;
        Ok(())
    }
}
