-- The last ?1 canonical blocks (by height): each one's stored logs (NULL: none stored yet) and
-- how they were kept (0 none, 1 receipts, 2 by filter).
SELECT b.number, b.receipts,
       CASE WHEN b.receipts = 0 THEN NULL ELSE (SELECT count(*) FROM logs l WHERE l.block_id = b.id) END
FROM blocks b
WHERE b.canonical = 1 AND b.number > (SELECT coalesce(max(number), 0) FROM blocks WHERE canonical = 1) - ?1
ORDER BY b.number
