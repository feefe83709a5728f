-- The receipt of transaction ?1 (32 bytes) in each block that holds it, canonical first (the
-- receipts_tx_hash index on the hash's first 8 bytes).
SELECT b.number, '0x' || lower(hex(b.hash)), b.canonical, r.idx, r.status,
       CASE WHEN r.post_state IS NULL THEN NULL ELSE '0x' || lower(hex(r.post_state)) END,
       r.tx_type, r.gas_used, r.cumulative_gas_used, CAST(r.effective_gas_price AS TEXT),
       CASE WHEN r.contract_address IS NULL THEN NULL ELSE '0x' || lower(hex(r.contract_address)) END,
       r.blob_gas_used, CAST(r.blob_gas_price AS TEXT), r.log_count, b.hash,
       CASE WHEN t.from_address IS NULL THEN NULL ELSE '0x' || lower(hex(t.from_address)) END,
       CASE WHEN t.to_address IS NULL THEN NULL ELSE '0x' || lower(hex(t.to_address)) END
FROM receipts r
JOIN blocks b ON b.id = r.block_id
LEFT JOIN transactions t ON t.block_id = r.block_id AND t.idx = r.idx
WHERE substr(r.tx_hash, 1, 8) = substr(?1, 1, 8) AND r.tx_hash = ?1
ORDER BY b.canonical DESC, b.number DESC
