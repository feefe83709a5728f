-- The alert rules' view of each provider over [?1, now): calls (cancelled ones left out),
-- errors (not throttles), and the p95 latency of successes by nearest rank.
WITH w AS (
    SELECT provider_id, outcome, latency_us
    FROM provider_requests
    WHERE ts_ms >= ?1 AND outcome <> 'cancelled'
),
ranked AS (
    SELECT provider_id, latency_us,
           row_number() OVER (PARTITION BY provider_id ORDER BY latency_us) AS rn,
           count(*) OVER (PARTITION BY provider_id) AS n
    FROM w WHERE outcome = 'ok'
)
SELECT p.name,
       (SELECT count(*) FROM w WHERE w.provider_id = p.id AND w.outcome <> 'rate_limited'),
       (SELECT count(*) FROM w WHERE w.provider_id = p.id AND w.outcome NOT IN ('ok', 'rate_limited')),
       (SELECT min(latency_us) FROM ranked r WHERE r.provider_id = p.id AND r.rn * 100 >= r.n * 95)
FROM providers p
ORDER BY p.id
