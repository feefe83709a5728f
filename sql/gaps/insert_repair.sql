-- One repair attempt.
INSERT INTO gap_repairs (detected_at_ms, attempted_at_ms, from_number, to_number, reason, provider_id, outcome, blocks, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
