-- Routing decisions (provider events) newest first, with id < ?1, at most ?2.
SELECT e.id, e.ts_ms, p.name, e.kind, e.reason
FROM provider_events e
JOIN providers p ON p.id = e.provider_id
WHERE e.id < ?1
ORDER BY e.id DESC
LIMIT ?2
