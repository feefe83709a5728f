-- One row per call a client made to /rpc: who (the API key's name, when keys are set), what,
-- who answered (`store` or a provider's name), how long it took, how it ended, how big it was.
CREATE TABLE client_requests (
    id         INTEGER PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    key_name   TEXT,
    method     TEXT NOT NULL,
    source     TEXT NOT NULL,
    latency_us INTEGER NOT NULL CHECK (latency_us >= 0),
    outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'rpc_error', 'refused')),
    rpc_code   INTEGER,
    bytes      INTEGER NOT NULL CHECK (bytes >= 0),
    -- calls in the request it came in (1: a single call)
    batch_size INTEGER NOT NULL CHECK (batch_size >= 1)
) STRICT;

CREATE INDEX client_requests_ts ON client_requests (ts_ms);
