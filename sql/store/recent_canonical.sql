-- The newest ?1 canonical blocks, newest first: seeds ingest's in-memory window.
SELECT number, hash FROM blocks WHERE canonical = 1 ORDER BY number DESC LIMIT ?1
