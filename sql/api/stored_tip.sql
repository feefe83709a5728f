-- Number, hash and commit time of the newest canonical block.
SELECT number, hash, fetched_at_ms FROM blocks WHERE canonical = 1 ORDER BY number DESC LIMIT 1
