-- Retention: delete error-class rows of up to ?2 of the oldest hours before ?1 (ms).
DELETE FROM provider_error_hours
WHERE hour_ms IN (SELECT DISTINCT hour_ms FROM provider_error_hours WHERE hour_ms < ?1 ORDER BY hour_ms LIMIT ?2)
