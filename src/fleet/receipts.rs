//! Receipts for blocks already fetched: asked of providers in selection order (one that failed
//! a block's receipts is skipped for it), verified against each header by the provider layer,
//! and attached to the blocks. A forged or inconsistent answer is a rejected block: the same
//! integrity penalty as a forged header.

use std::time::Instant;

use alloy_primitives::B256;

use super::failover::Attempts;
use super::{Fleet, FleetError, TIP_BATCH};
use crate::model::{Block, BlockReceipts, EventKind, ProviderId, TelemetryEvent};
use crate::provider::receipts::ReceiptsOf;
use crate::provider::{CallCtx, method};

impl Fleet {
    /// Fetch, verify and attach the receipts of every block of `blocks` that has none yet.
    /// Blocks without transactions get an empty list without a call.
    #[tracing::instrument(name = "receipts", skip_all, fields(from = blocks.first().map(|b| b.number), to = blocks.last().map(|b| b.number)))]
    pub async fn attach_receipts(&self, blocks: &mut [Block]) -> Result<(), FleetError> {
        self.receipts_into(blocks, &[], true).await
    }

    /// [`attach_receipts`](Self::attach_receipts), asking the providers in `avoid` only after
    /// every other one, and never hedged (a second opinion on another provider's answer).
    pub(super) async fn receipts_avoiding(&self, blocks: &mut [Block], avoid: &[ProviderId]) -> Result<(), FleetError> {
        self.receipts_into(blocks, avoid, false).await
    }

    async fn receipts_into(
        &self,
        blocks: &mut [Block],
        avoid: &[ProviderId],
        may_hedge: bool,
    ) -> Result<(), FleetError> {
        for b in blocks.iter_mut().filter(|b| b.receipts.is_none() && b.tx_count == 0) {
            // What eth_getBlockReceipts says of an empty block, without asking.
            let keep = b.raw.is_some();
            b.receipts = Some(BlockReceipts {
                receipts: Vec::new(),
                root_verified: Some(true),
                provider: b.provider,
                raw: keep.then(|| crate::rawjson::RawJson::compress("[]")),
                // No log: packing cannot fail.
                raw_logs: keep.then(|| crate::rawlogs::RawLogs::build([]).ok()).flatten(),
            });
        }
        let hashes: Vec<Vec<B256>> = blocks.iter().map(|b| b.transactions.iter().map(|t| t.hash).collect()).collect();
        // A few blocks at the tip: each on its own, hedged like the block fetch before it.
        let tip = may_hedge
            && blocks.len() <= TIP_BATCH
            && self.opts.hedge
            && blocks.last().is_some_and(|b| self.at_tip(b.number));
        if tip {
            let ofs: Vec<(usize, ReceiptsOf<'_>)> = (0..blocks.len())
                .filter(|&k| blocks[k].receipts.is_none())
                .map(|k| (k, ReceiptsOf::of(&blocks[k], &hashes[k])))
                .collect();
            let got = futures::future::try_join_all(ofs.iter().map(|(_, of)| self.receipts_hedged(*of))).await?;
            for ((k, _), r) in ofs.iter().zip(got) {
                blocks[*k].receipts = Some(r);
            }
            self.tell_learned();
            return Ok(());
        }
        let mut tries = Attempts::new(self, avoid);
        loop {
            let missing: Vec<usize> = (0..blocks.len()).filter(|&k| blocks[k].receipts.is_none()).collect();
            let Some(&first) = missing.first() else { return Ok(()) };
            let first_number = blocks[first].number;
            let what = move || format!("receipts of block {first_number}");
            let ofs: Vec<ReceiptsOf<'_>> = missing.iter().map(|&k| ReceiptsOf::of(&blocks[k], &hashes[k])).collect();
            let need = ofs.iter().map(|o| o.number).max();
            let lease = tries.lease(method::BLOCK_RECEIPTS, ofs.len() as u64, need, &what).await?;
            let slot = lease.slot;
            let ctx = CallCtx { attempt: tries.attempt(), hedged: false };
            let started = Instant::now();
            let results = slot.provider.block_receipts(&ofs, ctx).await;
            self.tell_learned();
            let mut first_err = None;
            for (k, r) in missing.iter().zip(results) {
                match r {
                    Ok(receipts) => blocks[*k].receipts = Some(receipts),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            let id = lease.id();
            self.settle(lease, started, first_err.as_ref().map_or(Ok(()), Err), true);
            if let Some(e) = first_err {
                tries.failed(id, &e, &what)?;
            }
        }
    }
}

impl Fleet {
    /// Record what providers learned about their support as `capability` events, once each.
    pub(super) fn tell_learned(&self) {
        for slot in &self.slots {
            for r in slot.provider.take_learned() {
                if r.notable {
                    self.emit(slot, EventKind::Capability, r.detail.clone());
                }
                self.telemetry.record(TelemetryEvent::Capability(r));
            }
        }
    }

    /// One block's receipts, hedged after the primary's p95 like a tip block fetch.
    async fn receipts_hedged(&self, of: ReceiptsOf<'_>) -> Result<BlockReceipts, FleetError> {
        self.with_failover(
            || format!("receipts of block {}", of.number),
            method::BLOCK_RECEIPTS,
            Some(of.number),
            true,
            |p, ctx| async move {
                let mut out = p.block_receipts(&[of], ctx).await;
                out.pop().unwrap_or_else(|| Err(crate::provider::ProviderError::Invalid("no answer".into())))
            },
        )
        .await
    }
}
