-- One row per block; the writer repeats the VALUES tuple to insert many blocks per statement.
-- RETURNING gives the row id of each block (new or already stored) for its transactions.
INSERT INTO blocks (
    hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, base_fee_per_gas,
    state_root, transactions_root, receipts_root, size, tx_count, full_txs, canonical, hash_verified,
    provider_id, fetched_at_ms
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
ON CONFLICT (hash) DO UPDATE SET canonical = 1
RETURNING id, hash
