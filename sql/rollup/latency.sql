-- Fold the latencies of successful raw rows with ?1 < id <= ?2 into the histogram buckets.
INSERT INTO provider_latency_minutes (provider_id, minute_ms, method, ub_us, n)
SELECT provider_id, (ts_ms / 60000) * 60000, method,
       (SELECT min(ub_us) FROM latency_buckets b WHERE b.ub_us >= r.latency_us),
       count(*)
FROM provider_requests r
WHERE id > ?1 AND id <= ?2 AND outcome = 'ok'
GROUP BY 1, 2, 3, 4
ON CONFLICT (provider_id, minute_ms, method, ub_us) DO UPDATE SET n = n + excluded.n
