-- One row per receipt; the writer repeats the VALUES tuple to insert many per statement.
-- A block that becomes canonical again already has its rows, hence DO NOTHING.
INSERT INTO receipts (
    block_id, idx, tx_hash, status, post_state, tx_type, gas_used, cumulative_gas_used,
    effective_gas_price, contract_address, blob_gas_used, blob_gas_price, log_count
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
