-- Where a stored block (hash ?1) left the canonical chain: walk its parents until one is
-- canonical; returns that ancestor's number and hash (none if the walk leaves the database).
WITH RECURSIVE up(hash, parent_hash, number, canonical, depth) AS (
    SELECT hash, parent_hash, number, canonical, 0 FROM blocks WHERE hash = ?1
    UNION ALL
    SELECT b.hash, b.parent_hash, b.number, b.canonical, up.depth + 1
    FROM blocks b JOIN up ON b.hash = up.parent_hash
    WHERE up.canonical = 0 AND up.depth < 100000
)
SELECT number, hash FROM up WHERE canonical = 1 LIMIT 1
