-- Only the first report of a (provider, hash) is kept; the writer repeats the VALUES tuple.
INSERT INTO block_sightings (provider_id, hash, number, first_seen_ms)
VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING
