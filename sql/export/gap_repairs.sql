-- Export page of gap repair attempts by the gap's first height: up to ?1 after the cursor
-- (from_number, id) > (?4, ?5), at most ?3 rows (?2 unused).
SELECT g.id, g.detected_at_ms, g.attempted_at_ms, g.from_number, g.to_number, g.reason,
       (SELECT name FROM providers p WHERE p.id = g.provider_id), g.outcome, g.blocks, g.error,
       g.from_number, g.id
FROM gap_repairs g
WHERE g.from_number >= ?4 AND (g.from_number, g.id) > (?4, ?5) AND g.from_number <= ?1 AND ?2 IN (0, 1)
ORDER BY g.from_number, g.id
LIMIT ?3
