-- Retention: delete provider_minutes rows of up to ?2 of the oldest minutes before ?1 (ms).
DELETE FROM provider_minutes
WHERE minute_ms IN (SELECT DISTINCT minute_ms FROM provider_minutes WHERE minute_ms < ?1 ORDER BY minute_ms LIMIT ?2)
