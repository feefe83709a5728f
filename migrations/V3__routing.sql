-- Routing decisions, repairs and what calls cost: provider_events (breaker, cooldown,
-- exclusion and primary switches, each with its reason), gap_repairs (every repair attempt),
-- credits per request, and the fork ledger (providers disagreeing at one height).

ALTER TABLE provider_requests ADD COLUMN credits INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0);

CREATE TABLE provider_events (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    provider_id INTEGER NOT NULL REFERENCES providers (id),
    -- breaker_open, breaker_half_open, breaker_closed, cooldown, excluded, readmitted,
    -- primary_switch, rate_adjusted, integrity_penalty, budget_exhausted, wrong_chain
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;

CREATE INDEX provider_events_ts ON provider_events (ts_ms);

CREATE TABLE gap_repairs (
    id             INTEGER PRIMARY KEY,
    detected_at_ms INTEGER NOT NULL,
    attempted_at_ms INTEGER NOT NULL,
    -- first and last height of the hole (or the block whose parent link broke)
    from_number    INTEGER NOT NULL CHECK (from_number >= 0),
    to_number      INTEGER NOT NULL CHECK (to_number >= from_number),
    -- missing | broken_link
    reason         TEXT NOT NULL,
    provider_id    INTEGER REFERENCES providers (id),
    -- repaired | failed | link_mismatch
    outcome        TEXT NOT NULL,
    blocks         INTEGER NOT NULL DEFAULT 0,
    error          TEXT
) STRICT;

CREATE INDEX gap_repairs_attempted ON gap_repairs (attempted_at_ms);

CREATE VIEW provider_events_view AS
SELECT e.id, e.ts_ms, p.name AS provider, e.kind, e.reason
FROM provider_events e
JOIN providers p ON p.id = e.provider_id;

CREATE VIEW gap_repairs_view AS
SELECT g.id, g.detected_at_ms, g.attempted_at_ms, g.from_number, g.to_number, g.reason,
       p.name AS provider, g.outcome, g.blocks, g.error
FROM gap_repairs g
LEFT JOIN providers p ON p.id = g.provider_id;

-- The fork ledger: heights at which providers reported different hashes at the head.
CREATE VIEW forks_view AS
SELECT
    s.number,
    count(DISTINCT s.hash) AS hashes,
    group_concat(DISTINCT p.name) AS providers,
    min(s.first_seen_ms) AS first_seen_ms,
    max(s.first_seen_ms) AS last_seen_ms
FROM block_sightings s
JOIN providers p ON p.id = s.provider_id
GROUP BY s.number
HAVING count(DISTINCT s.hash) > 1;
