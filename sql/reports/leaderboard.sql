-- Provider leaderboard per UTC day and method, from the minute rollups, which are kept
-- retention.rollup_days (90) while raw rows go after retention.raw_days (7): the same numbers
-- before and after the raw rows are pruned.
--   requests       calls, not counting hedge losers cancelled by the winner
--   uptime         share of the minutes with calls in which at least one call succeeded
--   error_rate     errors / (ok + errors): throttles and cancelled hedges are not errors
--   throttle_rate  throttled / requests
--   p50/p95/p99_ms latency of successful calls, nearest rank over 10 %-wide buckets (the
--                  bucket's upper bound: at most 10 % above the exact value)
--   credits        credits spent (the provider's per-method price table)
-- Run it: blockstreamer sql -f sql/reports/leaderboard.sql
WITH m AS (
    SELECT date(minute_ms / 1000, 'unixepoch') AS day, provider_id, method,
           sum(requests - cancelled) AS requests, sum(ok) AS ok, sum(errors) AS errors,
           sum(throttled) AS throttled, sum(credits) AS credits,
           sum(requests - cancelled > 0) AS active_minutes, sum(ok > 0) AS up_minutes
    FROM provider_minutes
    GROUP BY 1, 2, 3
),
b AS (
    SELECT date(minute_ms / 1000, 'unixepoch') AS day, provider_id, method, ub_us, sum(n) AS n
    FROM provider_latency_minutes
    GROUP BY 1, 2, 3, 4
),
c AS (
    SELECT day, provider_id, method, ub_us,
           sum(n) OVER (PARTITION BY day, provider_id, method ORDER BY ub_us ROWS UNBOUNDED PRECEDING) AS cum,
           sum(n) OVER (PARTITION BY day, provider_id, method) AS total
    FROM b
),
q AS (
    SELECT day, provider_id, method,
           min(CASE WHEN cum * 100 >= total * 50 THEN ub_us END) / 1000.0 AS p50_ms,
           min(CASE WHEN cum * 100 >= total * 95 THEN ub_us END) / 1000.0 AS p95_ms,
           min(CASE WHEN cum * 100 >= total * 99 THEN ub_us END) / 1000.0 AS p99_ms
    FROM c
    GROUP BY 1, 2, 3
)
SELECT m.day,
       p.name AS provider,
       m.method,
       m.requests,
       round(CASE WHEN m.active_minutes = 0 THEN NULL ELSE m.up_minutes * 1.0 / m.active_minutes END, 4) AS uptime,
       round(CASE WHEN m.ok + m.errors = 0 THEN 0.0 ELSE m.errors * 1.0 / (m.ok + m.errors) END, 4) AS error_rate,
       round(CASE WHEN m.requests = 0 THEN 0.0 ELSE m.throttled * 1.0 / m.requests END, 4) AS throttle_rate,
       q.p50_ms, q.p95_ms, q.p99_ms,
       m.credits
FROM m
JOIN providers p ON p.id = m.provider_id
LEFT JOIN q ON q.day = m.day AND q.provider_id = m.provider_id AND q.method = m.method
ORDER BY m.day DESC, m.method, error_rate, q.p95_ms, provider
