-- Each block's JSON and its receipts' JSON as the provider sent them and they were verified,
-- zstd-compressed: what /rpc serves byte for byte ([index] raw_json). Kept out of `blocks` so
-- scans over the typed columns do not read them.
CREATE TABLE block_json (
    block_id INTEGER PRIMARY KEY REFERENCES blocks (id) ON DELETE CASCADE,
    -- the block object (with full transactions when blocks.full_txs = 1, else hashes)
    block    BLOB NOT NULL,
    -- the eth_getBlockReceipts array, when every receipt was fetched (blocks.receipts = 1)
    receipts BLOB
) STRICT;
