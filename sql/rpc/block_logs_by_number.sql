-- The canonical block at a height, for eth_getLogs: its kept logs (src/rawlogs.rs) or, in a file
-- from before those were kept, its receipts' JSON; both NULL when its receipts are not kept.
SELECT b.number, b.hash,
       CASE WHEN b.receipts = 1 THEN j.logs END,
       CASE WHEN b.receipts = 1 AND j.logs IS NULL THEN j.receipts END
FROM blocks b
JOIN block_json j ON j.block_id = b.id
WHERE b.canonical = 1 AND b.number = ?1
