-- Export page of transactions: blocks up to height ?1 after the cursor
-- (number, block id, index) > (?4, ?5, ?6), canonical blocks only unless ?2 = 1, at most ?3
-- rows. The last three columns are the next cursor.
SELECT b.number, b.hash, t.idx, t.hash, t.from_address, t.to_address, t.value, t.nonce, t.gas,
       t.gas_price, t.max_fee_per_gas, t.max_priority_fee_per_gas, t.input, t.tx_type,
       b.timestamp, b.canonical,
       b.number, b.id, t.idx
FROM blocks b
JOIN transactions t ON t.block_id = b.id
WHERE b.number >= ?4 AND (b.number, b.id, t.idx) > (?4, ?5, ?6) AND b.number <= ?1 AND (?2 OR b.canonical = 1)
ORDER BY b.number, b.id, t.idx
LIMIT ?3
