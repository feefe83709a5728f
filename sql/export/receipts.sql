-- Export page of receipts: blocks up to height ?1 after the cursor
-- (number, block id, index) > (?4, ?5, ?6), canonical blocks only unless ?2 = 1, at most ?3
-- rows. The last three columns are the next cursor.
SELECT b.number, b.hash, r.idx, r.tx_hash, r.status, r.post_state, r.tx_type, r.gas_used,
       r.cumulative_gas_used, r.effective_gas_price, r.contract_address, r.blob_gas_used,
       r.blob_gas_price, r.log_count, b.timestamp, b.canonical,
       b.number, b.id, r.idx
FROM blocks b
JOIN receipts r ON r.block_id = b.id
WHERE b.number >= ?4 AND (b.number, b.id, r.idx) > (?4, ?5, ?6) AND b.number <= ?1 AND (?2 OR b.canonical = 1)
ORDER BY b.number, b.id, r.idx
LIMIT ?3
