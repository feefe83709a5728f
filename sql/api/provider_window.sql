-- /v1/providers: one row per provider over [?1, ?2) ms, by the rules of provider_health_5m
-- (errors exclude throttles and cancelled calls; percentiles by nearest rank over successes).
WITH w AS (
    SELECT r.provider_id, r.outcome, r.latency_us, r.head_reported, r.credits
    FROM provider_requests r
    WHERE r.ts_ms >= ?1 AND r.ts_ms < ?2 AND r.outcome <> 'cancelled'
),
ranked AS (
    SELECT provider_id, latency_us,
           row_number() OVER (PARTITION BY provider_id ORDER BY latency_us) AS rn,
           count(*) OVER (PARTITION BY provider_id) AS n
    FROM w WHERE outcome = 'ok'
),
pct AS (
    SELECT provider_id,
           min(CASE WHEN rn * 100 >= n * 50 THEN latency_us END) AS p50_us,
           min(CASE WHEN rn * 100 >= n * 95 THEN latency_us END) AS p95_us,
           min(CASE WHEN rn * 100 >= n * 99 THEN latency_us END) AS p99_us
    FROM ranked GROUP BY provider_id
),
agg AS (
    SELECT provider_id,
           count(*) AS requests,
           sum(outcome = 'ok') AS ok,
           sum(outcome = 'rate_limited') AS throttled,
           sum(outcome NOT IN ('ok', 'rate_limited')) AS errors,
           sum(credits) AS credits
    FROM w GROUP BY provider_id
)
SELECT p.name,
       coalesce(a.requests, 0), coalesce(a.ok, 0), coalesce(a.errors, 0), coalesce(a.throttled, 0),
       coalesce(a.credits, 0), q.p50_us, q.p95_us, q.p99_us
FROM providers p
LEFT JOIN agg a ON a.provider_id = p.id
LEFT JOIN pct q ON q.provider_id = p.id
ORDER BY p.id
