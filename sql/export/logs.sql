-- Export page of logs: blocks up to height ?1 after the cursor
-- (number, block id, log index) > (?4, ?5, ?6), canonical blocks only unless ?2 = 1, at most ?3
-- rows. The last three columns are the next cursor.
SELECT b.number, b.hash, l.tx_idx, l.log_index, l.tx_hash, l.address, l.topic0, l.topic1,
       l.topic2, l.topic3, l.data, b.timestamp, b.canonical,
       b.number, b.id, l.log_index
FROM blocks b
JOIN logs l ON l.block_id = b.id
WHERE b.number >= ?4 AND (b.number, b.id, l.log_index) > (?4, ?5, ?6) AND b.number <= ?1 AND (?2 OR b.canonical = 1)
ORDER BY b.number, b.id, l.log_index
LIMIT ?3
