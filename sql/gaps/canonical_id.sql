-- The row id of the block with hash ?1 while it is canonical.
SELECT id FROM blocks WHERE hash = ?1 AND canonical = 1
