-- Alerts newest first: id < ?2, only open ones when ?1 = 1, at most ?3.
SELECT id, kind, subject, started_at_ms, ended_at_ms, value, peak, threshold, message
FROM alerts
WHERE id < ?2 AND (?1 = 0 OR ended_at_ms IS NULL)
ORDER BY id DESC
LIMIT ?3
