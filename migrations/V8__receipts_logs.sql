-- Receipts and event logs, stored under their block like transactions: orphaning a block
-- removes its receipts and logs from the canonical views in the same transaction, and they are
-- deleted with it.

-- The header's logs bloom (what logs fetched by filter are checked against).
ALTER TABLE blocks ADD COLUMN logs_bloom BLOB CHECK (logs_bloom IS NULL OR length(logs_bloom) = 256);
-- 0: no receipts stored; 1: every receipt and log of the block; 2: only the logs the
-- [index] filters select (no receipts).
ALTER TABLE blocks ADD COLUMN receipts INTEGER NOT NULL DEFAULT 0 CHECK (receipts IN (0, 1, 2));
-- 1: the receipts trie root was recomputed and matched the header; 0: a receipt type this
-- build cannot encode (an L2's), so it could not be checked; NULL: no receipts.
ALTER TABLE blocks ADD COLUMN receipts_verified INTEGER CHECK (receipts_verified IN (0, 1));

-- Canonical blocks still waiting for their receipts (what the repair worker looks for).
CREATE INDEX blocks_without_receipts ON blocks (number) WHERE canonical = 1 AND receipts = 0 AND tx_count > 0;

CREATE TABLE receipts (
    block_id            INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    idx                 INTEGER NOT NULL CHECK (idx >= 0),
    tx_hash             BLOB NOT NULL CHECK (length(tx_hash) = 32),
    -- 1 success, 0 reverted; NULL before Byzantium, where post_state holds the state root
    status              INTEGER CHECK (status IN (0, 1)),
    post_state          BLOB CHECK (post_state IS NULL OR length(post_state) = 32),
    tx_type             INTEGER NOT NULL,
    gas_used            INTEGER NOT NULL,
    cumulative_gas_used INTEGER NOT NULL,
    -- wei amounts: INTEGER when they fit in i64, otherwise decimal TEXT
    effective_gas_price ANY,
    contract_address    BLOB CHECK (contract_address IS NULL OR length(contract_address) = 20),
    blob_gas_used       INTEGER,
    blob_gas_price      ANY,
    log_count           INTEGER NOT NULL CHECK (log_count >= 0),
    PRIMARY KEY (block_id, idx)
) STRICT, WITHOUT ROWID;

CREATE INDEX receipts_tx_hash ON receipts (substr(tx_hash, 1, 8));

CREATE TABLE logs (
    block_id     INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    log_index    INTEGER NOT NULL CHECK (log_index >= 0),
    -- the block's height, kept here so range queries by address and topic use one index
    block_number INTEGER NOT NULL,
    tx_idx       INTEGER NOT NULL CHECK (tx_idx >= 0),
    tx_hash      BLOB NOT NULL CHECK (length(tx_hash) = 32),
    address      BLOB NOT NULL CHECK (length(address) = 20),
    topic0       BLOB CHECK (topic0 IS NULL OR length(topic0) = 32),
    topic1       BLOB CHECK (topic1 IS NULL OR length(topic1) = 32),
    topic2       BLOB CHECK (topic2 IS NULL OR length(topic2) = 32),
    topic3       BLOB CHECK (topic3 IS NULL OR length(topic3) = 32),
    data         BLOB NOT NULL,
    PRIMARY KEY (block_id, log_index)
) STRICT, WITHOUT ROWID;

-- The queries users run: a contract's events of one kind over a range, one kind of event
-- anywhere, the logs of a transaction.
CREATE INDEX logs_address_topic0 ON logs (address, topic0, block_number);
CREATE INDEX logs_topic0 ON logs (topic0, block_number) WHERE topic0 IS NOT NULL;
CREATE INDEX logs_tx ON logs (substr(tx_hash, 1, 8));

CREATE VIEW receipts_view AS
SELECT
    b.number AS block_number,
    '0x' || lower(hex(b.hash)) AS block_hash,
    r.idx AS transaction_index,
    '0x' || lower(hex(r.tx_hash)) AS transaction_hash,
    r.status,
    CASE WHEN r.post_state IS NULL THEN NULL ELSE '0x' || lower(hex(r.post_state)) END AS post_state,
    r.tx_type,
    r.gas_used,
    r.cumulative_gas_used,
    r.effective_gas_price,
    CASE WHEN r.contract_address IS NULL THEN NULL ELSE '0x' || lower(hex(r.contract_address)) END AS contract_address,
    r.blob_gas_used,
    r.blob_gas_price,
    r.log_count
FROM receipts r
JOIN blocks b ON b.id = r.block_id
WHERE b.canonical = 1;

CREATE VIEW logs_view AS
SELECT
    l.block_number,
    '0x' || lower(hex(b.hash)) AS block_hash,
    l.tx_idx AS transaction_index,
    '0x' || lower(hex(l.tx_hash)) AS transaction_hash,
    l.log_index,
    '0x' || lower(hex(l.address)) AS address,
    CASE WHEN l.topic0 IS NULL THEN NULL ELSE '0x' || lower(hex(l.topic0)) END AS topic0,
    CASE WHEN l.topic1 IS NULL THEN NULL ELSE '0x' || lower(hex(l.topic1)) END AS topic1,
    CASE WHEN l.topic2 IS NULL THEN NULL ELSE '0x' || lower(hex(l.topic2)) END AS topic2,
    CASE WHEN l.topic3 IS NULL THEN NULL ELSE '0x' || lower(hex(l.topic3)) END AS topic3,
    '0x' || lower(hex(l.data)) AS data,
    b.timestamp AS block_timestamp
FROM logs l
JOIN blocks b ON b.id = l.block_id
WHERE b.canonical = 1;
