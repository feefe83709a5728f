-- ?1: JSON array of sightings; only the first report of a (provider, hash) is kept.
INSERT INTO block_sightings (provider_id, hash, number, first_seen_ms)
SELECT j.value ->> 'p', unhex(j.value ->> 'h'), j.value ->> 'n', j.value ->> 's'
FROM json_each(?1) AS j
WHERE true
ON CONFLICT DO NOTHING
