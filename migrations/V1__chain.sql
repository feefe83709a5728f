-- Chain data: blocks keyed by hash with a canonical flag, their transactions, and reorgs.
-- Hashes and addresses are raw bytes (BLOB); the *_view views present them as 0x-hex text.

CREATE TABLE providers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    url_redacted TEXT NOT NULL,
    added_at_ms INTEGER NOT NULL
) STRICT;

-- Rows are appended in id order; hashes are random, so keying the table (and the transactions
-- clustered under it) by id keeps inserts at the right edge of the B-trees instead of dirtying
-- random pages all over the file on every commit.
CREATE TABLE blocks (
    id                INTEGER PRIMARY KEY,
    hash              BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    number            INTEGER NOT NULL CHECK (number >= 0),
    parent_hash       BLOB NOT NULL CHECK (length(parent_hash) = 32),
    timestamp         INTEGER NOT NULL,
    miner             BLOB NOT NULL CHECK (length(miner) = 20),
    gas_used          INTEGER NOT NULL,
    gas_limit         INTEGER NOT NULL,
    -- wei amounts: INTEGER when they fit in i64, otherwise decimal TEXT
    base_fee_per_gas  ANY,
    state_root        BLOB NOT NULL CHECK (length(state_root) = 32),
    transactions_root BLOB NOT NULL CHECK (length(transactions_root) = 32),
    receipts_root     BLOB NOT NULL CHECK (length(receipts_root) = 32),
    size              INTEGER,
    -- how many transactions the block has; a stored block with fewer rows is partial
    tx_count          INTEGER NOT NULL CHECK (tx_count >= 0),
    -- 1 when the transactions were fetched and stored with the block (full_transactions = true)
    full_txs          INTEGER NOT NULL CHECK (full_txs IN (0, 1)),
    canonical         INTEGER NOT NULL DEFAULT 1 CHECK (canonical IN (0, 1)),
    hash_verified     INTEGER CHECK (hash_verified IN (0, 1)),
    provider_id       INTEGER REFERENCES providers (id),
    fetched_at_ms     INTEGER NOT NULL
) STRICT;

-- At most one canonical block per height: a duplicate canonical height is impossible, not just detected.
CREATE UNIQUE INDEX blocks_canonical_number ON blocks (number) WHERE canonical = 1;
CREATE INDEX blocks_number ON blocks (number);

CREATE TABLE transactions (
    block_id                 INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    idx                      INTEGER NOT NULL CHECK (idx >= 0),
    hash                     BLOB NOT NULL CHECK (length(hash) = 32),
    from_address             BLOB NOT NULL CHECK (length(from_address) = 20),
    to_address               BLOB CHECK (to_address IS NULL OR length(to_address) = 20),
    value                    ANY NOT NULL,
    nonce                    INTEGER NOT NULL,
    gas                      INTEGER NOT NULL,
    gas_price                ANY,
    max_fee_per_gas          ANY,
    max_priority_fee_per_gas ANY,
    input                    BLOB NOT NULL,
    tx_type                  INTEGER NOT NULL,
    PRIMARY KEY (block_id, idx)
) STRICT, WITHOUT ROWID;

-- Lookups by hash use the first 8 bytes: `WHERE substr(hash, 1, 8) = substr(?1, 1, 8) AND hash = ?1`.
-- Hashes are random, so this index is written all over on every commit; the 8-byte prefix
-- keeps it a third of the size of a full-hash index, and as selective in practice.
CREATE INDEX transactions_hash ON transactions (substr(hash, 1, 8));

CREATE TABLE reorgs (
    id             INTEGER PRIMARY KEY,
    detected_at_ms INTEGER NOT NULL,
    depth          INTEGER NOT NULL CHECK (depth >= 0),
    fork_number    INTEGER NOT NULL,
    fork_hash      BLOB NOT NULL CHECK (length(fork_hash) = 32),
    old_tip_number INTEGER NOT NULL,
    old_tip_hash   BLOB NOT NULL CHECK (length(old_tip_hash) = 32),
    new_tip_number INTEGER NOT NULL,
    new_tip_hash   BLOB NOT NULL CHECK (length(new_tip_hash) = 32),
    provider_id    INTEGER REFERENCES providers (id)
) STRICT;

-- Small key/value facts about this file: chain id, counters that must survive restarts.
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value ANY
) STRICT;

CREATE VIEW canonical_blocks AS
SELECT
    number,
    '0x' || lower(hex(hash)) AS hash,
    '0x' || lower(hex(parent_hash)) AS parent_hash,
    timestamp,
    '0x' || lower(hex(miner)) AS miner,
    gas_used,
    gas_limit,
    base_fee_per_gas,
    '0x' || lower(hex(state_root)) AS state_root,
    '0x' || lower(hex(transactions_root)) AS transactions_root,
    '0x' || lower(hex(receipts_root)) AS receipts_root,
    size,
    tx_count,
    hash_verified,
    (SELECT name FROM providers p WHERE p.id = b.provider_id) AS provider,
    fetched_at_ms
FROM blocks b
WHERE canonical = 1;

CREATE VIEW transactions_view AS
SELECT
    b.number AS block_number,
    '0x' || lower(hex(b.hash)) AS block_hash,
    t.idx AS transaction_index,
    '0x' || lower(hex(t.hash)) AS hash,
    '0x' || lower(hex(t.from_address)) AS from_address,
    CASE WHEN t.to_address IS NULL THEN NULL ELSE '0x' || lower(hex(t.to_address)) END AS to_address,
    t.value,
    t.nonce,
    t.gas,
    t.gas_price,
    t.max_fee_per_gas,
    t.max_priority_fee_per_gas,
    '0x' || lower(hex(t.input)) AS input,
    t.tx_type,
    b.timestamp AS block_timestamp
FROM transactions t
JOIN blocks b ON b.id = t.block_id
WHERE b.canonical = 1;

CREATE VIEW reorgs_view AS
SELECT
    r.id,
    r.detected_at_ms,
    r.depth,
    r.fork_number,
    '0x' || lower(hex(r.fork_hash)) AS fork_hash,
    r.old_tip_number,
    '0x' || lower(hex(r.old_tip_hash)) AS old_tip_hash,
    r.new_tip_number,
    '0x' || lower(hex(r.new_tip_hash)) AS new_tip_hash,
    p.name AS provider
FROM reorgs r
LEFT JOIN providers p ON p.id = r.provider_id;
