-- Canonical blocks with ?1 <= number <= ?2, lowest first, at most ?3.
SELECT * FROM api_blocks WHERE canonical = 1 AND number >= ?1 AND number <= ?2 ORDER BY number LIMIT ?3
