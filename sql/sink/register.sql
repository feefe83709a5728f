-- A sink starting for the first time: a row with no position yet (nothing published).
INSERT INTO sink_positions (sink, number, hash, messages, stream_seq, updated_ms)
VALUES (?1, NULL, NULL, 0, 0, ?2)
ON CONFLICT (sink) DO NOTHING
