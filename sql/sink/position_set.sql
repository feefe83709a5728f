-- Advance a sink after the broker acknowledged every message up to block (?2, ?3); keeps the
-- claim of an earlier batch in flight only while it reaches past the new position (?7, ?8,
-- NULL once covered) and clears the last error.
INSERT INTO sink_positions (sink, number, hash, messages, stream_seq, updated_ms, last_error, last_error_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)
ON CONFLICT (sink) DO UPDATE SET
    number = excluded.number, hash = excluded.hash, messages = excluded.messages,
    stream_seq = excluded.stream_seq, updated_ms = excluded.updated_ms,
    pending_number = ?7, pending_hash = ?8, last_error = NULL, last_error_ms = NULL
