-- The stored transactions of the block with hash ?1, in block order.
SELECT b.number, b.hash, b.canonical, t.idx, t.hash, t.from_address, t.to_address, CAST(t.value AS TEXT), t.nonce, t.gas, CAST(t.gas_price AS TEXT), CAST(t.max_fee_per_gas AS TEXT), CAST(t.max_priority_fee_per_gas AS TEXT), t.input, t.tx_type
FROM blocks b JOIN transactions t ON t.block_id = b.id
WHERE b.hash = ?1
ORDER BY t.idx
