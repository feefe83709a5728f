//! Asking one provider for blocks' receipts: `eth_getBlockReceipts` per block (batched), or
//! `eth_getTransactionReceipt` per transaction when the provider lacks the first (learned from
//! its answer and remembered), each block's receipts verified against its header.

use alloy_primitives::B256;
use jsonrpsee::core::params::ArrayParams;

use super::receipts::{ReceiptsOf, assemble_receipts, decode_block_receipts};
use super::{CallCtx, Provider, ProviderError, method, push};
use crate::model::{BlockReceipts, CapabilityMethod};

/// An error that says "this method does not exist here", rather than "not now".
pub(super) fn unsupported(e: &ProviderError) -> bool {
    match e {
        ProviderError::Rpc { code, message, .. } => {
            let m = message.to_ascii_lowercase();
            *code == -32601
                || ["not supported", "unsupported", "does not exist", "not found", "not available", "not whitelisted"]
                    .iter()
                    .any(|k| m.contains(k))
        }
        ProviderError::Http { status, .. } => matches!(status, 404 | 405 | 501),
        _ => false,
    }
}

impl Provider {
    /// The receipts of each block of `blocks`, verified: `eth_getBlockReceipts`, batched; where
    /// the provider lacks it, one `eth_getTransactionReceipt` per transaction (which needs the
    /// block's transaction hashes). One result per block, in order.
    pub async fn block_receipts(
        &self,
        blocks: &[ReceiptsOf<'_>],
        ctx: CallCtx,
    ) -> Vec<Result<BlockReceipts, ProviderError>> {
        if self.caps.worth_trying(CapabilityMethod::BlockReceipts) {
            let out = self.by_block(blocks, ctx).await;
            match out.iter().find_map(|r| r.as_ref().err()) {
                Some(e) if unsupported(e) => {
                    tracing::info!(provider = self.name(), error = %e, "provider lacks eth_getBlockReceipts; asking per transaction");
                    self.caps.lacks(self.id, CapabilityMethod::BlockReceipts, &e.to_string());
                    return self.by_transaction(blocks, ctx).await;
                }
                _ => {
                    if out.iter().any(Result::is_ok) {
                        self.caps.works(self.id, CapabilityMethod::BlockReceipts);
                    }
                    return out;
                }
            }
        }
        self.by_transaction(blocks, ctx).await
    }

    async fn by_block(&self, blocks: &[ReceiptsOf<'_>], ctx: CallCtx) -> Vec<Result<BlockReceipts, ProviderError>> {
        let heights: Vec<Option<u64>> = blocks.iter().map(|b| Some(b.number)).collect();
        let params = |k: usize| {
            let mut p = ArrayParams::new();
            push(&mut p, format!("{:#x}", blocks[k].number));
            p
        };
        let decode = |k: usize, raw: &str| Ok(decode_block_receipts(raw, blocks[k], self.id)?);
        self.calls(method::BLOCK_RECEIPTS, &heights, params, decode, ctx).await
    }

    async fn by_transaction(
        &self,
        blocks: &[ReceiptsOf<'_>],
        ctx: CallCtx,
    ) -> Vec<Result<BlockReceipts, ProviderError>> {
        // One batch for every transaction of every block asked for.
        let mut calls: Vec<(usize, B256)> = Vec::new();
        for (k, b) in blocks.iter().enumerate() {
            if let Some(hashes) = b.tx_hashes {
                calls.extend(hashes.iter().map(|h| (k, *h)));
            }
        }
        let heights: Vec<Option<u64>> = calls.iter().map(|(k, _)| Some(blocks[*k].number)).collect();
        let params = |i: usize| {
            let mut p = ArrayParams::new();
            push(&mut p, format!("{}", calls[i].1));
            p
        };
        let raw = |_: usize, raw: &str| Ok(raw.to_string());
        let answers = if calls.is_empty() {
            Vec::new()
        } else {
            self.calls(method::TX_RECEIPT, &heights, params, raw, ctx).await
        };
        let mut per_block: Vec<Vec<Result<String, ProviderError>>> = blocks.iter().map(|_| Vec::new()).collect();
        for ((k, _), a) in calls.iter().zip(answers) {
            per_block[*k].push(a);
        }
        blocks
            .iter()
            .zip(per_block)
            .map(|(b, answers)| {
                if b.tx_hashes.is_none() && b.tx_count > 0 {
                    return Err(ProviderError::Invalid(
                        "receipts per transaction need the block's transaction hashes (full_transactions = true)"
                            .into(),
                    ));
                }
                let raws = answers.into_iter().collect::<Result<Vec<String>, ProviderError>>()?;
                let refs: Vec<&str> = raws.iter().map(String::as_str).collect();
                Ok(assemble_receipts(&refs, *b, self.id)?)
            })
            .collect()
    }
}
