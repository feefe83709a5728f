-- The newest ?2 canonical blocks strictly below height ?1, newest first (backfill seeding).
SELECT number, hash FROM blocks WHERE canonical = 1 AND number < ?1 ORDER BY number DESC LIMIT ?2
