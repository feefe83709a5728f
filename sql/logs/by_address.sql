-- Logs of canonical blocks from some addresses (the logs_address_topic0 index), an
-- eth_getLogs-style filter: ?1 addresses, ?2..?5 topic alternatives (JSON arrays of hex
-- without 0x, or NULL for any), heights ?6..=?7, after (block ?8, log index ?9), at most ?10.
SELECT l.block_number, '0x' || lower(hex(b.hash)), b.timestamp, l.tx_idx, '0x' || lower(hex(l.tx_hash)), l.log_index,
       '0x' || lower(hex(l.address)), l.topic0, l.topic1, l.topic2, l.topic3, l.data
FROM logs l
JOIN blocks b ON b.id = l.block_id
WHERE b.canonical = 1
  AND l.address IN (SELECT unhex(value) FROM json_each(?1))
  AND l.block_number BETWEEN ?6 AND ?7
  AND (?1 IS NULL OR l.address IN (SELECT unhex(value) FROM json_each(?1)))
  AND (?2 IS NULL OR l.topic0 IN (SELECT unhex(value) FROM json_each(?2)))
  AND (?3 IS NULL OR l.topic1 IN (SELECT unhex(value) FROM json_each(?3)))
  AND (?4 IS NULL OR l.topic2 IN (SELECT unhex(value) FROM json_each(?4)))
  AND (?5 IS NULL OR l.topic3 IN (SELECT unhex(value) FROM json_each(?5)))
  AND (l.block_number, l.log_index) > (?8, ?9)
ORDER BY l.block_number, l.log_index
LIMIT ?10
