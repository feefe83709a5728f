//! Receipts for blocks already fetched: asked of providers in selection order (one that failed
//! a block's receipts is skipped for it), verified against each header by the provider layer,
//! and attached to the blocks. A forged or inconsistent answer is a rejected block: the same
//! integrity penalty as a forged header.

use std::time::Instant;

use alloy_primitives::B256;

use super::failover::Attempts;
use super::{Fleet, FleetError};
use crate::model::{Block, BlockReceipts, EventKind};
use crate::provider::receipts::ReceiptsOf;
use crate::provider::{CallCtx, method};

impl Fleet {
    /// Fetch, verify and attach the receipts of every block of `blocks` that has none yet.
    /// Blocks without transactions get an empty list without a call.
    #[tracing::instrument(name = "receipts", skip_all, fields(from = blocks.first().map(|b| b.number), to = blocks.last().map(|b| b.number)))]
    pub async fn attach_receipts(&self, blocks: &mut [Block]) -> Result<(), FleetError> {
        for b in blocks.iter_mut().filter(|b| b.receipts.is_none() && b.tx_count == 0) {
            b.receipts = Some(BlockReceipts { receipts: Vec::new(), root_verified: Some(true), provider: b.provider });
        }
        let hashes: Vec<Vec<B256>> = blocks.iter().map(|b| b.transactions.iter().map(|t| t.hash).collect()).collect();
        let mut tries = Attempts::new(self, &[]);
        loop {
            let missing: Vec<usize> = (0..blocks.len()).filter(|&k| blocks[k].receipts.is_none()).collect();
            let Some(&first) = missing.first() else { return Ok(()) };
            let first_number = blocks[first].number;
            let what = move || format!("receipts of block {first_number}");
            let ofs: Vec<ReceiptsOf<'_>> = missing.iter().map(|&k| receipts_of(&blocks[k], &hashes[k])).collect();
            let need = ofs.iter().map(|o| o.number).max();
            let lease = tries.lease(method::BLOCK_RECEIPTS, ofs.len() as u64, need, &what).await?;
            let slot = lease.slot;
            let ctx = CallCtx { attempt: tries.attempt(), hedged: false };
            let started = Instant::now();
            let (results, learned) = slot.provider.block_receipts(&ofs, ctx).await;
            if learned {
                self.emit(
                    slot,
                    EventKind::Capability,
                    "eth_getBlockReceipts is not supported; receipts are asked per transaction".into(),
                );
            }
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

fn receipts_of<'a>(b: &Block, hashes: &'a [B256]) -> ReceiptsOf<'a> {
    ReceiptsOf {
        number: b.number,
        hash: b.hash,
        receipts_root: b.receipts_root,
        tx_count: b.tx_count,
        tx_hashes: b.full_txs.then_some(hashes),
    }
}
