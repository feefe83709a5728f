-- A sink's batch in flight: written before the publish, cleared with the position after every
-- acknowledgement. After a crash it bounds what the broker may hold beyond the position, so a
-- reorg that replaced those blocks while the sink was down is still told.
ALTER TABLE sink_positions ADD COLUMN pending_number INTEGER CHECK (pending_number >= 0);
ALTER TABLE sink_positions ADD COLUMN pending_hash BLOB CHECK (length(pending_hash) = 32);

-- `blockstreamer consume` applying a stream into this file: the stream sequence of the last
-- message applied, advanced in the same transaction as what the message changed.
CREATE TABLE consumer_positions (
    stream      TEXT PRIMARY KEY,
    stream_seq  INTEGER NOT NULL CHECK (stream_seq >= 0),
    messages    INTEGER NOT NULL CHECK (messages >= 0),
    updated_ms  INTEGER NOT NULL
) STRICT;

-- Blocks a sink told consumers to undo, with how many times: if one becomes canonical again
-- while the broker still remembers its message ids (A → B → A inside the duplicate window),
-- its messages are published again under `…:redo<times>` ids instead of being dropped as
-- duplicates. Written with the position that acknowledged the reorg message.
CREATE TABLE sink_undone (
    sink   TEXT NOT NULL,
    hash   BLOB NOT NULL CHECK (length(hash) = 32),
    times  INTEGER NOT NULL CHECK (times >= 1),
    PRIMARY KEY (sink, hash)
) STRICT, WITHOUT ROWID;
