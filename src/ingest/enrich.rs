//! What fetched blocks need before they are committed, by `[index]`: their receipts (verified
//! against the header) or, without receipts, their selected logs (`eth_getLogs`, checked
//! against the bloom); logs outside the selection dropped; and their logs decoded into the
//! contracts' tables. Ingest, reorg handling and gap repair all go through here.

use crate::fleet::{Fleet, FleetError};
use crate::index::{DecodedLog, Indexing};
use crate::model::Block;

/// Attach what `ix` indexes to `blocks` (those that already have it are left alone).
pub async fn enrich(fleet: &Fleet, ix: &Indexing, blocks: &mut [Block]) -> Result<(), FleetError> {
    if ix.receipts {
        fleet.attach_receipts(blocks).await?;
        if !ix.selection.is_all() {
            trim(ix, blocks);
        }
    } else if ix.stores_logs() {
        fleet.attach_logs(blocks, &ix.selection, ix.logs_range).await?;
    }
    if !ix.tables.is_empty() {
        decode(ix, blocks);
    }
    Ok(())
}

/// Keep only the selected logs of full receipts (the receipts keep their log counts).
fn trim(ix: &Indexing, blocks: &mut [Block]) {
    for r in blocks.iter_mut().filter_map(|b| b.receipts.as_mut()) {
        for rc in &mut r.receipts {
            rc.logs.retain(|l| ix.selection.selects(&l.inner.address, l.inner.data.topics()));
        }
    }
}

/// Decode every log that belongs to a decoded table (a failure is kept as a decode error).
pub fn decode(ix: &Indexing, blocks: &mut [Block]) {
    for b in blocks.iter_mut() {
        let mut out = Vec::new();
        for l in b.all_logs() {
            let topics = l.inner.data.topics();
            for t in ix.tables_for(&l.inner.address, topics.first(), b.number) {
                let Some(table) = ix.tables.get(usize::from(t)) else { continue };
                out.push(DecodedLog { table: t, log_index: l.log_index, values: table.decode(&l.inner.data) });
            }
        }
        b.decoded = out;
    }
}
