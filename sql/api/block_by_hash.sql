-- Any stored block (canonical or not) by hash ?1 (32 bytes).
SELECT * FROM api_blocks WHERE hash = ?1
