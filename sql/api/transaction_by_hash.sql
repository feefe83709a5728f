-- Every stored copy of transaction ?1 (32 bytes), canonical block first (a tx may sit in an
-- orphaned block too). The 8-byte prefix matches the transactions_hash index.
SELECT b.number, b.hash, b.canonical, t.idx, t.hash, t.from_address, t.to_address, CAST(t.value AS TEXT), t.nonce, t.gas, CAST(t.gas_price AS TEXT), CAST(t.max_fee_per_gas AS TEXT), CAST(t.max_priority_fee_per_gas AS TEXT), t.input, t.tx_type
FROM transactions t JOIN blocks b ON b.id = t.block_id
WHERE substr(t.hash, 1, 8) = substr(?1, 1, 8) AND t.hash = ?1
ORDER BY b.canonical DESC, b.number DESC
