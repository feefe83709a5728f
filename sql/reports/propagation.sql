-- Block propagation per provider and UTC day, from block_sightings (the first time each
-- provider reported each block hash): how far behind the first provider to report a block
-- each provider was. p50/p95 are nearest rank; `first` counts the blocks a provider saw no
-- later than any other. Sightings are kept retention.rollup_days.
-- Run it: blockstreamer sql -f sql/reports/propagation.sql
WITH s AS (
    SELECT provider_id,
           date(min(first_seen_ms) OVER (PARTITION BY hash) / 1000, 'unixepoch') AS day,
           first_seen_ms - min(first_seen_ms) OVER (PARTITION BY hash) AS behind_ms
    FROM block_sightings
),
r AS (
    SELECT day, provider_id, behind_ms,
           row_number() OVER (PARTITION BY day, provider_id ORDER BY behind_ms) AS rn,
           count(*) OVER (PARTITION BY day, provider_id) AS n
    FROM s
)
SELECT r.day,
       p.name AS provider,
       max(r.n) AS blocks_seen,
       sum(r.behind_ms = 0) AS first,
       min(CASE WHEN r.rn * 100 >= r.n * 50 THEN r.behind_ms END) AS p50_behind_ms,
       min(CASE WHEN r.rn * 100 >= r.n * 95 THEN r.behind_ms END) AS p95_behind_ms,
       max(r.behind_ms) AS max_behind_ms
FROM r
JOIN providers p ON p.id = r.provider_id
GROUP BY r.day, r.provider_id
ORDER BY r.day DESC, p50_behind_ms, provider
