-- Record why a sink cannot go on (the broker is down, the stream is gone); its position stays.
UPDATE sink_positions SET last_error = ?2, last_error_ms = ?3 WHERE sink = ?1
