-- Canonical blocks whose parent hash is not the hash of the canonical block just below.
SELECT b.number
FROM blocks b
JOIN blocks p ON p.canonical = 1 AND p.number = b.number - 1
WHERE b.canonical = 1 AND b.number >= ?1 AND b.parent_hash <> p.hash
ORDER BY b.number
