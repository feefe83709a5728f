-- The newest canonical block.
SELECT * FROM api_blocks WHERE canonical = 1 ORDER BY number DESC LIMIT 1
