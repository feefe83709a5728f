-- Demote the canonical block at one height (a repair replaces it); the row stays, by hash.
UPDATE blocks SET canonical = 0 WHERE canonical = 1 AND number = ?1
