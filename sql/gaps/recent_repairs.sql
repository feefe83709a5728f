-- The latest repair attempts, newest first.
SELECT id, detected_at_ms, attempted_at_ms, from_number, to_number, reason, provider, outcome, blocks, error
FROM gap_repairs_view
ORDER BY id DESC
LIMIT ?1
