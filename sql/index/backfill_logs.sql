-- Stored logs of one address and topic0 in a height range (any block, canonical or not: the
-- views filter), for decoding into a table made after they were stored.
SELECT block_id, log_index, block_number, topic0, topic1, topic2, topic3, data
FROM logs
WHERE address = ?1 AND topic0 = ?2 AND block_number BETWEEN ?3 AND ?4
ORDER BY block_number, log_index
