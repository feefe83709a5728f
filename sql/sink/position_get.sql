-- A sink's position: the last block fully acknowledged, messages and broker sequence so far,
-- and the end of the batch in flight when it stopped (if any).
SELECT number, hash, messages, stream_seq, pending_number, pending_hash FROM sink_positions WHERE sink = ?1
