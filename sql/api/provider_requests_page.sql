-- One provider's raw telemetry, newest first: id < ?2, at most ?3.
SELECT r.id, r.ts_ms, r.method, r.block_number, r.latency_us, r.outcome, r.http_status, r.rpc_code,
       r.bytes, r.head_reported, r.attempt, r.hedged, r.batch_size, r.credits, r.error
FROM provider_requests r JOIN providers p ON p.id = r.provider_id
WHERE p.name = ?1 AND r.id < ?2
ORDER BY r.id DESC
LIMIT ?3
