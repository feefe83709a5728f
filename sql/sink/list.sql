-- Every sink's state, for /v1/sinks.
SELECT sink, number, hash, messages, stream_seq, updated_ms, last_error, last_error_ms
FROM sink_positions ORDER BY sink
