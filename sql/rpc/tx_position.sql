-- Where a transaction is: its canonical block's hash and its index there.
SELECT b.hash, t.idx
FROM transactions t
JOIN blocks b ON b.id = t.block_id
WHERE substr(t.hash, 1, 8) = substr(?1, 1, 8) AND t.hash = ?1 AND b.canonical = 1
LIMIT 1
