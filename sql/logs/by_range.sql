-- Logs of canonical blocks in a height range, walked by block (the blocks_number index, then
-- each block's logs by key); parameters as in by_address.sql.
SELECT l.block_number, '0x' || lower(hex(b.hash)), b.timestamp, l.tx_idx, '0x' || lower(hex(l.tx_hash)), l.log_index,
       '0x' || lower(hex(l.address)), l.topic0, l.topic1, l.topic2, l.topic3, l.data
FROM blocks b
JOIN logs l ON l.block_id = b.id
WHERE b.canonical = 1
  AND b.number BETWEEN ?6 AND ?7
  AND (?1 IS NULL OR l.address IN (SELECT unhex(value) FROM json_each(?1)))
  AND (?2 IS NULL OR l.topic0 IN (SELECT unhex(value) FROM json_each(?2)))
  AND (?3 IS NULL OR l.topic1 IN (SELECT unhex(value) FROM json_each(?3)))
  AND (?4 IS NULL OR l.topic2 IN (SELECT unhex(value) FROM json_each(?4)))
  AND (?5 IS NULL OR l.topic3 IN (SELECT unhex(value) FROM json_each(?5)))
  AND (l.block_number, l.log_index) > (?8, ?9)
ORDER BY b.number, l.log_index
LIMIT ?10
