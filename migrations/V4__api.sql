-- What the HTTP API and the alert evaluator need: the alerts ledger and the open-gaps view.
-- (The provider health views live in V5, over the telemetry rollups.)

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
