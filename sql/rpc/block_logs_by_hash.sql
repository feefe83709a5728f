-- A stored block by hash, canonical or not, for eth_getLogs: as block_logs_by_number.sql.
SELECT b.number, b.hash,
       CASE WHEN b.receipts = 1 THEN j.logs END,
       CASE WHEN b.receipts = 1 AND j.logs IS NULL THEN j.receipts END
FROM blocks b
JOIN block_json j ON j.block_id = b.id
WHERE b.hash = ?1
