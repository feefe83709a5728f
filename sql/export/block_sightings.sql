-- Export page of block sightings: heights up to ?1 after the cursor
-- (number, provider id, hash) > (?4, ?5, ?6), at most ?3 rows (?2 is unused: every sighting
-- is exported). behind_first_ms: how long after the first provider this one saw the block.
SELECT s.number, s.hash, p.name, s.first_seen_ms,
       s.first_seen_ms - (SELECT min(o.first_seen_ms) FROM block_sightings o
                          WHERE o.number = s.number AND o.hash = s.hash),
       s.number, s.provider_id, s.hash
FROM block_sightings s
JOIN providers p ON p.id = s.provider_id
WHERE s.number >= ?4 AND (s.number, s.provider_id, s.hash) > (?4, ?5, ?6) AND s.number <= ?1 AND ?2 IN (0, 1)
ORDER BY s.number, s.provider_id, s.hash
LIMIT ?3
