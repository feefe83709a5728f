-- Reorgs newest first, with id < ?1, at most ?2.
SELECT r.id, r.detected_at_ms, r.depth, r.fork_number, r.fork_hash, r.old_tip_number, r.old_tip_hash,
       r.new_tip_number, r.new_tip_hash, p.name
FROM reorgs r LEFT JOIN providers p ON p.id = r.provider_id
WHERE r.id < ?1
ORDER BY r.id DESC
LIMIT ?2
