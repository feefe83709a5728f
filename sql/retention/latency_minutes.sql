-- Retention: delete latency histogram rows of up to ?2 of the oldest minutes before ?1 (ms).
DELETE FROM provider_latency_minutes
WHERE minute_ms IN (SELECT DISTINCT minute_ms FROM provider_latency_minutes WHERE minute_ms < ?1 ORDER BY minute_ms LIMIT ?2)
