-- Telemetry for the latency plot: calls that reached a provider (cancelled hedge losers left out)
-- since ?1 (ms), oldest first, at most ?2 rows.
SELECT p.name, r.ts_ms, r.latency_us, r.outcome
FROM provider_requests r
JOIN providers p ON p.id = r.provider_id
WHERE r.ts_ms >= ?1 AND r.outcome <> 'cancelled'
ORDER BY r.ts_ms
LIMIT ?2
