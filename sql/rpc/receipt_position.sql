-- Where a transaction's receipt is: its canonical block's hash and its index there.
SELECT b.hash, r.idx
FROM receipts r
JOIN blocks b ON b.id = r.block_id
WHERE substr(r.tx_hash, 1, 8) = substr(?1, 1, 8) AND r.tx_hash = ?1 AND b.canonical = 1
LIMIT 1
