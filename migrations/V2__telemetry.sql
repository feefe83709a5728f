-- Per-request telemetry (one row per JSON-RPC call attempt) and first sightings of each block.

CREATE TABLE provider_requests (
    id            INTEGER PRIMARY KEY,
    ts_ms         INTEGER NOT NULL,
    provider_id   INTEGER NOT NULL REFERENCES providers (id),
    method        TEXT NOT NULL,
    block_number  INTEGER,
    latency_us    INTEGER NOT NULL CHECK (latency_us >= 0),
    outcome       TEXT NOT NULL,
    http_status   INTEGER,
    rpc_code      INTEGER,
    bytes         INTEGER,
    head_reported INTEGER,
    attempt       INTEGER NOT NULL CHECK (attempt >= 1),
    hedged        INTEGER NOT NULL DEFAULT 0 CHECK (hedged IN (0, 1)),
    batch_size    INTEGER NOT NULL DEFAULT 1 CHECK (batch_size >= 1),
    error         TEXT
) STRICT;

CREATE INDEX provider_requests_ts ON provider_requests (ts_ms);
CREATE INDEX provider_requests_provider_ts ON provider_requests (provider_id, ts_ms);

CREATE TABLE block_sightings (
    provider_id   INTEGER NOT NULL REFERENCES providers (id),
    hash          BLOB NOT NULL CHECK (length(hash) = 32),
    number        INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (provider_id, hash)
) STRICT, WITHOUT ROWID;

CREATE INDEX block_sightings_number ON block_sightings (number);

CREATE VIEW provider_requests_view AS
SELECT
    r.id,
    r.ts_ms,
    p.name AS provider,
    r.method,
    r.block_number,
    r.latency_us / 1000.0 AS latency_ms,
    r.outcome,
    r.http_status,
    r.rpc_code,
    r.bytes,
    r.head_reported,
    r.hedged,
    r.attempt,
    r.batch_size,
    r.error
FROM provider_requests r
JOIN providers p ON p.id = r.provider_id;

CREATE VIEW block_sightings_view AS
SELECT
    s.number,
    '0x' || lower(hex(s.hash)) AS hash,
    p.name AS provider,
    s.first_seen_ms,
    s.first_seen_ms - (SELECT min(o.first_seen_ms) FROM block_sightings o WHERE o.hash = s.hash) AS behind_first_ms,
    (SELECT count(*) FROM block_sightings o
      WHERE o.hash = s.hash
        AND (o.first_seen_ms < s.first_seen_ms OR (o.first_seen_ms = s.first_seen_ms AND o.provider_id < s.provider_id))) = 0 AS first
FROM block_sightings s
JOIN providers p ON p.id = s.provider_id;
