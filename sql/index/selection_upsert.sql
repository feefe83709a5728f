-- The id of a log selection (made on first use).
INSERT INTO log_selections (fingerprint, added_at_ms) VALUES (?1, ?2)
ON CONFLICT (fingerprint) DO UPDATE SET fingerprint = excluded.fingerprint
RETURNING id
