-- `blockstreamer sink-reset`: forget a sink's position so it publishes again from the first
-- stored block (or the height given, ?2/?3 being the block before it).
UPDATE sink_positions SET number = ?2, hash = ?3, messages = 0, stream_seq = 0, pending_number = NULL,
    pending_hash = NULL, last_error = NULL, last_error_ms = NULL, updated_ms = ?4
WHERE sink = ?1
