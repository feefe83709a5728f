-- Retention: delete up to ?2 provider events (rotations, exclusions) older than ?1 (ms).
DELETE FROM provider_events
WHERE id IN (SELECT id FROM provider_events WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)
