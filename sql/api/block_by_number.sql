-- The canonical block at height ?1.
SELECT * FROM api_blocks WHERE canonical = 1 AND number = ?1
