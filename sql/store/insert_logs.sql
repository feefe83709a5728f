-- One row per log; the writer repeats the VALUES tuple to insert many per statement.
-- A block that becomes canonical again already has its rows, hence DO NOTHING.
INSERT INTO logs (
    block_id, log_index, block_number, tx_idx, tx_hash, address, topic0, topic1, topic2, topic3, data
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
