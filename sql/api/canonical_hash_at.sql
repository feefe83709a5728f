-- The canonical hash at height ?1 (the SSE stream checks a client's position against it).
SELECT hash FROM blocks WHERE canonical = 1 AND number = ?1
