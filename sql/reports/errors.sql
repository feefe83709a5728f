-- Failed calls per provider and UTC hour, by class (outcome) and code: HTTP status for
-- http_4xx / http_5xx / rate_limited, JSON-RPC error code for rpc_error (0 when none), with
-- each class's share of the provider's calls that hour. From the hourly error rollup (kept
-- retention.rollup_days); cancelled hedge losers are not failures.
-- Run it: blockstreamer sql -f sql/reports/errors.sql
WITH calls AS (
    SELECT provider_id, (minute_ms / 3600000) * 3600000 AS hour_ms, sum(requests - cancelled) AS requests
    FROM provider_minutes
    GROUP BY 1, 2
)
SELECT strftime('%Y-%m-%d %H:00', e.hour_ms / 1000, 'unixepoch') AS hour,
       p.name AS provider,
       e.outcome,
       e.http_status,
       e.rpc_code,
       sum(e.n) AS failures,
       round(sum(e.n) * 1.0 / max(c.requests, 1), 4) AS share_of_calls
FROM provider_error_hours e
JOIN providers p ON p.id = e.provider_id
LEFT JOIN calls c ON c.provider_id = e.provider_id AND c.hour_ms = e.hour_ms
GROUP BY e.hour_ms, e.provider_id, e.outcome, e.http_status, e.rpc_code
ORDER BY e.hour_ms DESC, provider, failures DESC, e.outcome
