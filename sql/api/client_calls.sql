-- The /rpc calls since ?1 (ms), newest first, at most ?2: who, what, answered by whom, how it
-- ended, how long it took and how big the answer was (the dashboard's client panel).
SELECT key_name, method, source, outcome, latency_us, bytes
FROM client_requests
WHERE ts_ms >= ?1
ORDER BY ts_ms DESC
LIMIT ?2
