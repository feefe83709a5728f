-- A sink's position: the last block fully acknowledged, messages and broker sequence so far.
SELECT number, hash, messages, stream_seq FROM sink_positions WHERE sink = ?1
