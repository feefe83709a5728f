-- Advance a sink after the broker acknowledged every message up to block (?2, ?3); clears the
-- batch in flight and the last error.
INSERT INTO sink_positions (sink, number, hash, messages, stream_seq, updated_ms, last_error, last_error_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)
ON CONFLICT (sink) DO UPDATE SET
    number = excluded.number, hash = excluded.hash, messages = excluded.messages,
    stream_seq = excluded.stream_seq, updated_ms = excluded.updated_ms,
    pending_number = NULL, pending_hash = NULL, last_error = NULL, last_error_ms = NULL
