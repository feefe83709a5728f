-- Canonical blocks with ?1 <= number <= ?2, highest first, at most ?3.
SELECT * FROM api_blocks WHERE canonical = 1 AND number >= ?1 AND number <= ?2 ORDER BY number DESC LIMIT ?3
