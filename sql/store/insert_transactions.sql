-- One row per transaction; the writer repeats the VALUES tuple to insert many per statement.
-- A block that becomes canonical again already has its rows, hence DO NOTHING.
INSERT INTO transactions (
    block_id, idx, hash, from_address, to_address, value, nonce, gas, gas_price,
    max_fee_per_gas, max_priority_fee_per_gas, input, tx_type
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
