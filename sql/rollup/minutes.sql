-- Fold raw telemetry rows with ?1 < id <= ?2 into provider_minutes (per provider, minute, method).
INSERT INTO provider_minutes (provider_id, minute_ms, method, requests, ok, errors, throttled, cancelled, credits, max_head)
SELECT provider_id, (ts_ms / 60000) * 60000, method, count(*),
       sum(outcome = 'ok'),
       sum(outcome NOT IN ('ok', 'rate_limited', 'cancelled')),
       sum(outcome = 'rate_limited'),
       sum(outcome = 'cancelled'),
       sum(credits),
       max(head_reported)
FROM provider_requests
WHERE id > ?1 AND id <= ?2
GROUP BY 1, 2, 3
ON CONFLICT (provider_id, minute_ms, method) DO UPDATE SET
    requests = requests + excluded.requests,
    ok = ok + excluded.ok,
    errors = errors + excluded.errors,
    throttled = throttled + excluded.throttled,
    cancelled = cancelled + excluded.cancelled,
    credits = credits + excluded.credits,
    max_head = max(coalesce(max_head, excluded.max_head), coalesce(excluded.max_head, max_head))
