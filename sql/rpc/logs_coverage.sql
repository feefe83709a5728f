-- How many heights of ?1..=?2 have a canonical block with every receipt kept (what eth_getLogs
-- needs to answer for the range from the store).
SELECT count(*)
FROM blocks b
JOIN block_json j ON j.block_id = b.id
WHERE b.canonical = 1 AND b.number BETWEEN ?1 AND ?2 AND b.receipts = 1 AND j.receipts IS NOT NULL
