-- The stored logs of transaction ?2 in the block with hash ?1.
SELECT l.block_number, '0x' || lower(hex(b.hash)), b.timestamp, l.tx_idx, '0x' || lower(hex(l.tx_hash)), l.log_index,
       '0x' || lower(hex(l.address)), l.topic0, l.topic1, l.topic2, l.topic3, l.data
FROM blocks b
JOIN logs l ON l.block_id = b.id
WHERE b.hash = ?1 AND l.tx_idx = ?2
ORDER BY l.log_index
