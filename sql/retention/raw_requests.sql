-- Retention: delete up to ?3 raw telemetry rows older than ?1 (ms) that the rollups already
-- hold (id <= ?2, the last folded id), oldest first.
DELETE FROM provider_requests
WHERE id IN (SELECT id FROM provider_requests WHERE ts_ms < ?1 AND id <= ?2 ORDER BY ts_ms LIMIT ?3)
