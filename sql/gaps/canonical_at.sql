-- The canonical block at one height: its hash and parent hash.
SELECT hash, parent_hash FROM blocks WHERE canonical = 1 AND number = ?1
