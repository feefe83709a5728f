-- Before a publish: the last block of the batch about to be sent.
UPDATE sink_positions SET pending_number = ?2, pending_hash = ?3 WHERE sink = ?1
