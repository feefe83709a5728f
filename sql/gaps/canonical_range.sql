-- Canonical (number, hash) in [?1, ?2].
SELECT number, hash FROM blocks WHERE canonical = 1 AND number BETWEEN ?1 AND ?2
