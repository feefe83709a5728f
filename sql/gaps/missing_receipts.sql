-- Canonical blocks with transactions but no receipts stored (a provider failed, or receipts
-- were switched on later), lowest first, at most ?1 (the blocks_without_receipts index).
SELECT number FROM blocks
WHERE canonical = 1 AND receipts = 0 AND tx_count > 0
ORDER BY number
LIMIT ?1
