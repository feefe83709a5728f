-- The rows the HTTP API serves, one view per kind, read by column name in store/query.rs (one
-- projection instead of the same column list repeated per query). Internal: hashes stay
-- 32-byte blobs (the API renders them), wei amounts are cast to text so that values stored as
-- integers and as decimal text (above 2^63) read alike. Users query canonical_blocks and
-- transactions_view instead.

CREATE VIEW api_blocks AS
SELECT
    b.id,
    b.number,
    b.hash,
    b.parent_hash,
    b.timestamp,
    b.miner,
    b.gas_used,
    b.gas_limit,
    CAST(b.base_fee_per_gas AS TEXT) AS base_fee_per_gas,
    b.state_root,
    b.transactions_root,
    b.receipts_root,
    b.size,
    b.tx_count,
    b.full_txs,
    b.canonical,
    b.hash_verified,
    (SELECT name FROM providers p WHERE p.id = b.provider_id) AS provider,
    b.fetched_at_ms
FROM blocks b;

CREATE VIEW api_transactions AS
SELECT
    b.number AS block_number,
    b.hash AS block_hash,
    b.canonical,
    t.idx AS transaction_index,
    t.hash,
    t.from_address,
    t.to_address,
    CAST(t.value AS TEXT) AS value,
    t.nonce,
    t.gas,
    CAST(t.gas_price AS TEXT) AS gas_price,
    CAST(t.max_fee_per_gas AS TEXT) AS max_fee_per_gas,
    CAST(t.max_priority_fee_per_gas AS TEXT) AS max_priority_fee_per_gas,
    t.input,
    t.tx_type
FROM transactions t
JOIN blocks b ON b.id = t.block_id;
