-- The canonical block at a height: its kept JSON (?2 = 0: the block's, 1: its receipts').
SELECT b.number, b.hash, b.full_txs, b.tx_count, CASE ?2 WHEN 0 THEN j.block ELSE j.receipts END
FROM blocks b
JOIN block_json j ON j.block_id = b.id
WHERE b.canonical = 1 AND b.number = ?1
