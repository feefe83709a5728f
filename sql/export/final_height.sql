-- The highest final height: the canonical tip minus the writer's confirmations (meta), or NULL
-- when nothing is stored.
SELECT max(number) - coalesce((SELECT value FROM meta WHERE key = 'confirmations'), 0)
FROM blocks WHERE canonical = 1
