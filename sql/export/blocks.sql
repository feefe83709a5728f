-- Export page of blocks: heights up to ?1 after the cursor (number, id) > (?4, ?5), canonical
-- only unless ?2 = 1, at most ?3 rows. The last two columns are the next cursor.
SELECT number, hash, parent_hash, timestamp, miner, gas_used, gas_limit, base_fee_per_gas,
       state_root, transactions_root, receipts_root, size, tx_count, hash_verified,
       (SELECT name FROM providers p WHERE p.id = b.provider_id), fetched_at_ms, canonical,
       number, id
FROM blocks b
WHERE number >= ?4 AND (number, id) > (?4, ?5) AND number <= ?1 AND (?2 OR canonical = 1)
ORDER BY number, id
LIMIT ?3
