-- Export default range of blocks and transactions: the lowest and highest stored height
-- (canonical only unless ?1 = 1).
SELECT min(number), max(number) FROM blocks WHERE ?1 OR canonical = 1
