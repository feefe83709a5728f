-- What the HTTP API and the alert evaluator need: the alerts ledger and the provider health
-- views users query (the API's /v1/providers windows run the same expressions: sql/api/provider_window.sql).

CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    -- error_rate, p95_latency, lag_blocks, lag_seconds, gap_open, credits, no_new_block
    kind          TEXT NOT NULL,
    -- the provider's name, or '' for fleet-wide alerts
    subject       TEXT NOT NULL DEFAULT '',
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER CHECK (ended_at_ms IS NULL OR ended_at_ms >= started_at_ms),
    -- the measured value when it opened, the worst seen while open, and the threshold
    value         REAL NOT NULL,
    peak          REAL NOT NULL,
    threshold     REAL NOT NULL,
    message       TEXT NOT NULL
) STRICT;

-- At most one open alert per kind and subject.
CREATE UNIQUE INDEX alerts_open ON alerts (kind, subject) WHERE ended_at_ms IS NULL;
CREATE INDEX alerts_started ON alerts (started_at_ms);

CREATE VIEW alerts_view AS
SELECT id, kind, subject, started_at_ms, ended_at_ms,
       CASE WHEN ended_at_ms IS NULL THEN 'open' ELSE 'resolved' END AS state,
       value, peak, threshold, message
FROM alerts;

-- Open holes in the canonical chain (missing heights below the stored head).
CREATE VIEW gaps_view AS
SELECT prev + 1 AS from_number, number - 1 AS to_number, number - prev - 1 AS blocks
FROM (
    SELECT number, lag(number) OVER (ORDER BY number) AS prev
    FROM blocks
    WHERE canonical = 1
)
WHERE prev IS NOT NULL AND number > prev + 1;

-- Per provider over the last 5 minutes / 1 hour, by the same rules the fleet scores with:
-- error_rate = errors / (ok + errors), where throttles and cancelled calls (lost hedges,
-- shutdown) are neither; throttle_rate = throttles / (all but cancelled); latency
-- percentiles (nearest rank) over successful calls only.
CREATE VIEW provider_health_5m AS
WITH w AS (
    SELECT r.provider_id, r.outcome, r.latency_us, r.head_reported
    FROM provider_requests r
    WHERE r.ts_ms >= CAST(unixepoch('subsec') * 1000 AS INTEGER) - 300000 AND r.outcome <> 'cancelled'
),
ranked AS (
    SELECT provider_id, latency_us,
           row_number() OVER (PARTITION BY provider_id ORDER BY latency_us) AS rn,
           count(*) OVER (PARTITION BY provider_id) AS n
    FROM w WHERE outcome = 'ok'
),
pct AS (
    SELECT provider_id,
           min(CASE WHEN rn * 100 >= n * 50 THEN latency_us END) / 1000.0 AS p50_ms,
           min(CASE WHEN rn * 100 >= n * 95 THEN latency_us END) / 1000.0 AS p95_ms,
           min(CASE WHEN rn * 100 >= n * 99 THEN latency_us END) / 1000.0 AS p99_ms
    FROM ranked GROUP BY provider_id
),
agg AS (
    SELECT provider_id,
           count(*) AS requests,
           sum(outcome = 'ok') AS ok,
           sum(outcome = 'rate_limited') AS throttled,
           sum(outcome NOT IN ('ok', 'rate_limited')) AS errors,
           max(head_reported) AS head
    FROM w GROUP BY provider_id
)
SELECT p.name AS provider,
       coalesce(a.requests, 0) AS requests,
       coalesce(a.errors, 0) AS errors,
       coalesce(a.throttled, 0) AS throttled,
       CASE WHEN coalesce(a.ok, 0) + coalesce(a.errors, 0) = 0 THEN 0.0
            ELSE a.errors * 1.0 / (a.ok + a.errors) END AS error_rate,
       CASE WHEN coalesce(a.requests, 0) = 0 THEN 0.0 ELSE a.throttled * 1.0 / a.requests END AS throttle_rate,
       q.p50_ms, q.p95_ms, q.p99_ms,
       a.head,
       (SELECT max(number) FROM blocks WHERE canonical = 1) - a.head AS lag_blocks
FROM providers p
LEFT JOIN agg a ON a.provider_id = p.id
LEFT JOIN pct q ON q.provider_id = p.id;

CREATE VIEW provider_health_1h AS
WITH w AS (
    SELECT r.provider_id, r.outcome, r.latency_us, r.head_reported
    FROM provider_requests r
    WHERE r.ts_ms >= CAST(unixepoch('subsec') * 1000 AS INTEGER) - 3600000 AND r.outcome <> 'cancelled'
),
ranked AS (
    SELECT provider_id, latency_us,
           row_number() OVER (PARTITION BY provider_id ORDER BY latency_us) AS rn,
           count(*) OVER (PARTITION BY provider_id) AS n
    FROM w WHERE outcome = 'ok'
),
pct AS (
    SELECT provider_id,
           min(CASE WHEN rn * 100 >= n * 50 THEN latency_us END) / 1000.0 AS p50_ms,
           min(CASE WHEN rn * 100 >= n * 95 THEN latency_us END) / 1000.0 AS p95_ms,
           min(CASE WHEN rn * 100 >= n * 99 THEN latency_us END) / 1000.0 AS p99_ms
    FROM ranked GROUP BY provider_id
),
agg AS (
    SELECT provider_id,
           count(*) AS requests,
           sum(outcome = 'ok') AS ok,
           sum(outcome = 'rate_limited') AS throttled,
           sum(outcome NOT IN ('ok', 'rate_limited')) AS errors,
           max(head_reported) AS head
    FROM w GROUP BY provider_id
)
SELECT p.name AS provider,
       coalesce(a.requests, 0) AS requests,
       coalesce(a.errors, 0) AS errors,
       coalesce(a.throttled, 0) AS throttled,
       CASE WHEN coalesce(a.ok, 0) + coalesce(a.errors, 0) = 0 THEN 0.0
            ELSE a.errors * 1.0 / (a.ok + a.errors) END AS error_rate,
       CASE WHEN coalesce(a.requests, 0) = 0 THEN 0.0 ELSE a.throttled * 1.0 / a.requests END AS throttle_rate,
       q.p50_ms, q.p95_ms, q.p99_ms,
       a.head,
       (SELECT max(number) FROM blocks WHERE canonical = 1) - a.head AS lag_blocks
FROM providers p
LEFT JOIN agg a ON a.provider_id = p.id
LEFT JOIN pct q ON q.provider_id = p.id;
