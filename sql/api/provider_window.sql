-- /v1/providers: one row per provider over the minutes starting at or after ?1 (ms) and
-- before ?2, from the rollups, by the rules of provider_health_5m (errors exclude throttles
-- and cancelled calls; percentiles are histogram bucket upper bounds, nearest rank).
WITH m AS (
    SELECT provider_id, sum(requests - cancelled) AS requests, sum(ok) AS ok, sum(errors) AS errors,
           sum(throttled) AS throttled, sum(credits) AS credits
    FROM provider_minutes WHERE minute_ms >= ?1 AND minute_ms < ?2 GROUP BY provider_id
),
b AS (
    SELECT provider_id, ub_us, sum(n) AS n
    FROM provider_latency_minutes WHERE minute_ms >= ?1 AND minute_ms < ?2 GROUP BY provider_id, ub_us
),
c AS (
    SELECT provider_id, ub_us,
           sum(n) OVER (PARTITION BY provider_id ORDER BY ub_us ROWS UNBOUNDED PRECEDING) AS cum,
           sum(n) OVER (PARTITION BY provider_id) AS total
    FROM b
),
q AS (
    SELECT provider_id,
           min(CASE WHEN cum * 100 >= total * 50 THEN ub_us END) AS p50_us,
           min(CASE WHEN cum * 100 >= total * 95 THEN ub_us END) AS p95_us,
           min(CASE WHEN cum * 100 >= total * 99 THEN ub_us END) AS p99_us
    FROM c GROUP BY provider_id
)
SELECT p.name,
       coalesce(m.requests, 0), coalesce(m.ok, 0), coalesce(m.errors, 0), coalesce(m.throttled, 0),
       coalesce(m.credits, 0), q.p50_us, q.p95_us, q.p99_us
FROM providers p
LEFT JOIN m ON m.provider_id = p.id
LEFT JOIN q ON q.provider_id = p.id
ORDER BY p.id
