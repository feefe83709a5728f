-- Demote the old branch above a fork point; the rows stay, reachable by hash.
UPDATE blocks SET canonical = 0 WHERE canonical = 1 AND number > ?1
