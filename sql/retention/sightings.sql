-- Retention: delete up to ?2 block sightings first seen before ?1 (ms), oldest first.
DELETE FROM block_sightings
WHERE (provider_id, hash) IN (
    SELECT provider_id, hash FROM block_sightings WHERE first_seen_ms < ?1 ORDER BY first_seen_ms LIMIT ?2
)
