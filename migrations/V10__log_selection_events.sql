-- Which logs a block's stored logs are (the [index] selection they were kept by), the
-- registry of decoded event tables, and the logs that failed to decode.

-- One row per selection ever used; `fingerprint` is '*' for every log, else the filters in a
-- canonical text form.
CREATE TABLE log_selections (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    added_at_ms INTEGER NOT NULL
) STRICT;

INSERT INTO log_selections (id, fingerprint, added_at_ms) VALUES (1, '*', 0);

-- The selection the block's logs were kept by; NULL while it has none (receipts = 0).
ALTER TABLE blocks ADD COLUMN logs_selection INTEGER REFERENCES log_selections (id);
-- Blocks stored with receipts before this migration kept every log.
UPDATE blocks SET logs_selection = 1 WHERE receipts = 1;

-- Every decoded table this database has (the tables themselves are made from the ABI at
-- start-up: `evt_<contract>_<event>` and its view `evt_<contract>_<event>_view`).
CREATE TABLE event_tables (
    name            TEXT PRIMARY KEY,
    contract        TEXT NOT NULL,
    -- the full event signature, with parameter names and `indexed`
    signature       TEXT NOT NULL,
    topic0          BLOB NOT NULL CHECK (length(topic0) = 32),
    -- 0x addresses, comma-separated, sorted
    addresses       TEXT NOT NULL,
    start_block     INTEGER NOT NULL CHECK (start_block >= 0),
    -- JSON: [{"name", "type", "indexed", "kind"}]
    columns         TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    -- stored logs decoded up to this block_id (the backfill's cursor); NULL when done
    backfill_cursor INTEGER,
    -- the highest block id when the table was made: the backfill ends there (later blocks are
    -- decoded as they are stored)
    backfill_until  INTEGER
) STRICT;

CREATE TABLE decode_errors (
    block_id    INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    log_index   INTEGER NOT NULL,
    event_table TEXT NOT NULL,
    error       TEXT NOT NULL,
    PRIMARY KEY (block_id, log_index, event_table)
) STRICT, WITHOUT ROWID;

CREATE VIEW decode_errors_view AS
SELECT
    b.number AS block_number,
    '0x' || lower(hex(b.hash)) AS block_hash,
    l.tx_idx AS transaction_index,
    '0x' || lower(hex(l.tx_hash)) AS transaction_hash,
    e.log_index,
    '0x' || lower(hex(l.address)) AS address,
    CASE WHEN l.topic0 IS NULL THEN NULL ELSE '0x' || lower(hex(l.topic0)) END AS topic0,
    e.event_table,
    e.error
FROM decode_errors e
JOIN blocks b ON b.id = e.block_id
JOIN logs l ON l.block_id = e.block_id AND l.log_index = e.log_index
WHERE b.canonical = 1;
