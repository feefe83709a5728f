-- One row per block; the writer repeats the VALUES tuple to insert many blocks per statement.
-- RETURNING gives the row id of each block (new or already stored) for its transactions.
-- A block stored again (canonical again after a reorg, or fetched again with its receipts)
-- keeps the receipts it has unless the new copy brings more (1: all, 2: filtered logs only);
-- the logs it brings are added to those it has.
INSERT INTO blocks (
    hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, base_fee_per_gas,
    state_root, transactions_root, receipts_root, size, tx_count, full_txs, canonical, hash_verified,
    provider_id, fetched_at_ms, logs_bloom, receipts, receipts_verified, logs_selection
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hash) DO UPDATE SET
    canonical = 1,
    logs_bloom = coalesce(logs_bloom, excluded.logs_bloom),
    receipts_verified = CASE WHEN receipts = 1 OR excluded.receipts = 0 THEN receipts_verified ELSE excluded.receipts_verified END,
    receipts = CASE WHEN receipts = 1 OR excluded.receipts = 0 THEN receipts ELSE excluded.receipts END,
    -- every log (1) stays every log; otherwise the new copy's logs were just added to the old
    logs_selection = CASE WHEN receipts = 1 AND logs_selection = 1 THEN 1
                          ELSE coalesce(excluded.logs_selection, logs_selection) END
RETURNING id, hash
