-- Each block's logs as the node sent them, with every log's address and topics beside its JSON,
-- zstd-compressed (src/rawlogs.rs): what eth_getLogs matches and serves without decompressing and
-- scanning the receipts. Kept with `receipts`; NULL in files written before this version (those
-- blocks are answered from `receipts`).
ALTER TABLE block_json ADD COLUMN logs BLOB;
