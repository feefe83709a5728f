-- Export page of reorgs by fork height: fork heights up to ?1 after the cursor
-- (fork_number, id) > (?4, ?5), at most ?3 rows (?2 unused).
SELECT r.id, r.detected_at_ms, r.depth, r.fork_number, r.fork_hash, r.old_tip_number, r.old_tip_hash,
       r.new_tip_number, r.new_tip_hash, (SELECT name FROM providers p WHERE p.id = r.provider_id),
       r.fork_number, r.id
FROM reorgs r
WHERE r.fork_number >= ?4 AND (r.fork_number, r.id) > (?4, ?5) AND r.fork_number <= ?1 AND ?2 IN (0, 1)
ORDER BY r.fork_number, r.id
LIMIT ?3
