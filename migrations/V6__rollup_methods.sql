-- Rollups by method: the minute rollups gain a `method` column so the daily leaderboard
-- (sql/reports/leaderboard.sql) can give latency percentiles and credits per method for as
-- long as rollups are kept (retention.rollup_days), after raw rows are gone (raw_days).
-- provider_error_hours keeps failures by class for the error report. The health views sum over methods and are recreated unchanged. The rollups are rebuilt from
-- the raw rows: 'rollup_last_id' is reset and the store folds everything again at open.

DROP VIEW provider_health_1h;
DROP VIEW provider_health_5m;
DROP VIEW provider_health_windows;
DROP TABLE provider_latency_minutes;
DROP TABLE provider_minutes;
DELETE FROM meta WHERE key = 'rollup_last_id';

CREATE TABLE provider_minutes (
    provider_id INTEGER NOT NULL REFERENCES providers (id),
    -- start of the minute, ms since the epoch
    minute_ms   INTEGER NOT NULL,
    method      TEXT NOT NULL,
    requests    INTEGER NOT NULL DEFAULT 0,
    ok          INTEGER NOT NULL DEFAULT 0,
    -- not ok, not throttled, not cancelled
    errors      INTEGER NOT NULL DEFAULT 0,
    throttled   INTEGER NOT NULL DEFAULT 0,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    credits     INTEGER NOT NULL DEFAULT 0,
    max_head    INTEGER,
    PRIMARY KEY (provider_id, minute_ms, method)
) STRICT, WITHOUT ROWID;

CREATE INDEX provider_minutes_minute ON provider_minutes (minute_ms);

CREATE TABLE provider_latency_minutes (
    provider_id INTEGER NOT NULL REFERENCES providers (id),
    minute_ms   INTEGER NOT NULL,
    method      TEXT NOT NULL,
    ub_us       INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (provider_id, minute_ms, method, ub_us)
) STRICT, WITHOUT ROWID;

CREATE INDEX provider_latency_minutes_minute ON provider_latency_minutes (minute_ms);

-- Failed calls by class per hour (everything but ok and cancelled hedge losers), for the
-- error breakdown report; http_status / rpc_code are 0 when the call had none.
CREATE TABLE provider_error_hours (
    provider_id INTEGER NOT NULL REFERENCES providers (id),
    hour_ms     INTEGER NOT NULL,
    method      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    rpc_code    INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (provider_id, hour_ms, method, outcome, http_status, rpc_code)
) STRICT, WITHOUT ROWID;

CREATE INDEX provider_error_hours_hour ON provider_error_hours (hour_ms);

-- Retention deletes sightings by age.
CREATE INDEX block_sightings_seen ON block_sightings (first_seen_ms);

CREATE VIEW provider_health_windows AS
WITH bounds(span, since) AS (
    SELECT '5m', (CAST(unixepoch('subsec') * 1000 AS INTEGER) / 60000) * 60000 - 5 * 60000
    UNION ALL
    SELECT '1h', (CAST(unixepoch('subsec') * 1000 AS INTEGER) / 60000) * 60000 - 60 * 60000
),
m AS (
    SELECT span, provider_id, sum(requests - cancelled) AS requests, sum(ok) AS ok, sum(errors) AS errors,
           sum(throttled) AS throttled, sum(credits) AS credits, max(max_head) AS head
    FROM provider_minutes JOIN bounds ON minute_ms >= bounds.since GROUP BY span, provider_id
),
b AS (
    SELECT span, provider_id, ub_us, sum(n) AS n
    FROM provider_latency_minutes JOIN bounds ON minute_ms >= bounds.since GROUP BY span, provider_id, ub_us
),
c AS (
    SELECT span, provider_id, ub_us,
           sum(n) OVER (PARTITION BY span, provider_id ORDER BY ub_us ROWS UNBOUNDED PRECEDING) AS cum,
           sum(n) OVER (PARTITION BY span, provider_id) AS total
    FROM b
),
q AS (
    SELECT span, provider_id,
           min(CASE WHEN cum * 100 >= total * 50 THEN ub_us END) / 1000.0 AS p50_ms,
           min(CASE WHEN cum * 100 >= total * 95 THEN ub_us END) / 1000.0 AS p95_ms,
           min(CASE WHEN cum * 100 >= total * 99 THEN ub_us END) / 1000.0 AS p99_ms
    FROM c GROUP BY span, provider_id
)
SELECT bounds.span,
       p.name AS provider,
       coalesce(m.requests, 0) AS requests,
       coalesce(m.errors, 0) AS errors,
       coalesce(m.throttled, 0) AS throttled,
       CASE WHEN coalesce(m.ok, 0) + coalesce(m.errors, 0) = 0 THEN 0.0
            ELSE m.errors * 1.0 / (m.ok + m.errors) END AS error_rate,
       CASE WHEN coalesce(m.requests, 0) = 0 THEN 0.0 ELSE m.throttled * 1.0 / m.requests END AS throttle_rate,
       q.p50_ms, q.p95_ms, q.p99_ms,
       coalesce(m.credits, 0) AS credits,
       m.head,
       (SELECT max(number) FROM blocks WHERE canonical = 1) - m.head AS lag_blocks
FROM bounds
CROSS JOIN providers p
LEFT JOIN m ON m.span = bounds.span AND m.provider_id = p.id
LEFT JOIN q ON q.span = bounds.span AND q.provider_id = p.id;

CREATE VIEW provider_health_5m AS
SELECT provider, requests, errors, throttled, error_rate, throttle_rate, p50_ms, p95_ms, p99_ms, credits, head, lag_blocks
FROM provider_health_windows WHERE span = '5m';

CREATE VIEW provider_health_1h AS
SELECT provider, requests, errors, throttled, error_rate, throttle_rate, p50_ms, p95_ms, p99_ms, credits, head, lag_blocks
FROM provider_health_windows WHERE span = '1h';
