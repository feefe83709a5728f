-- Advance `consume` in a stream, in the transaction that applied the messages.
INSERT INTO consumer_positions (stream, stream_seq, messages, updated_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (stream) DO UPDATE SET
    stream_seq = excluded.stream_seq, messages = excluded.messages, updated_ms = excluded.updated_ms
