-- Where each broker sink stands in the canonical chain: the last block all of whose messages
-- the broker acknowledged (advanced only after the acknowledgement, so after a crash the sink
-- publishes again from here and the broker's duplicate window drops what it already has), the
-- messages and the broker's sequence acknowledged so far, and the last error.
CREATE TABLE sink_positions (
    sink          TEXT PRIMARY KEY,
    -- NULL until the first block is acknowledged
    number        INTEGER CHECK (number >= 0),
    hash          BLOB CHECK (length(hash) = 32),
    messages      INTEGER NOT NULL CHECK (messages >= 0),
    stream_seq    INTEGER NOT NULL CHECK (stream_seq >= 0),
    updated_ms    INTEGER NOT NULL,
    last_error    TEXT,
    last_error_ms INTEGER
) STRICT;
