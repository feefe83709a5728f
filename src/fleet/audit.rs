//! Spot checks: a block's receipts asked of a provider that did not serve it and verified
//! against the header, so a provider that forges receipts or logs is caught, and its integrity
//! standing kept current, even while the fleet routes nothing to it.

use std::time::Instant;

use alloy_primitives::B256;

use super::Fleet;
use crate::model::Block;
use crate::provider::receipts::ReceiptsOf;
use crate::provider::{CallCtx, ProviderError, Support, method};
use crate::types::now_ms;

impl Fleet {
    /// Ask one eligible provider for the receipts of one of `blocks` (each with verified
    /// receipts) that it did not serve, the newest it has reported; they are verified against
    /// the header like any fetch, a forged answer penalised like a forged block (the outcome is
    /// in the telemetry). Providers take turns by height; nobody is asked when no other
    /// provider is eligible.
    pub async fn audit_receipts(&self, blocks: &[std::sync::Arc<Block>]) {
        let Some(newest) = blocks.last() else { return };
        let n = self.slots.len();
        let first = usize::try_from(newest.number).unwrap_or(0) % n.max(1);
        for k in 0..n {
            let slot = &self.slots[(first + k) % n];
            let id = slot.provider.id();
            // Only a block the provider has (a lagging one's "not found" would count against it
            // unfairly) and a provider that answers eth_getBlockReceipts (per transaction costs
            // too much).
            let head = slot.lock().head.map(|h| h.number);
            let served = |b: &Block| b.provider == id || b.receipts.as_ref().is_some_and(|r| r.provider == id);
            let Some(b) = blocks.iter().rev().find(|b| head.is_some_and(|h| h >= b.number) && !served(b)) else {
                continue;
            };
            if slot.provider.capabilities().block_receipts == Support::No {
                continue;
            }
            let credits = u64::from(slot.provider.credits(method::BLOCK_RECEIPTS));
            let Ok(lease) = self.take(slot, credits, Instant::now(), now_ms()) else { continue };
            let started = Instant::now();
            let ctx = CallCtx { attempt: 1, hedged: false };
            let hashes: Vec<B256> = b.transactions.iter().map(|t| t.hash).collect();
            // A check only: its receipts are not stored, so their JSON is not kept.
            let of = ReceiptsOf { keep_raw: false, ..ReceiptsOf::of(b, &hashes) };
            let r = slot.provider.block_receipts(&[of], ctx).await.pop();
            let r = r.unwrap_or_else(|| Err(ProviderError::Invalid("no answer".into())));
            self.tell_learned();
            self.settle(lease, started, r.as_ref().map(|_| ()), true);
            if let Err(e) = &r {
                tracing::warn!(provider = slot.provider.name(), block = b.number, error = %e, "spot check of receipts failed");
            }
            return;
        }
    }
}
