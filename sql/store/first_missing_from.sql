-- The lowest height in [?1, ?2] with no canonical block, or NULL / a value above ?2 when none.
SELECT CASE
    WHEN NOT EXISTS (SELECT 1 FROM blocks WHERE canonical = 1 AND number = ?1) THEN ?1
    ELSE (
        SELECT min(b.number) + 1 FROM blocks b
        WHERE b.canonical = 1 AND b.number >= ?1 AND b.number <= ?2
          AND NOT EXISTS (SELECT 1 FROM blocks c WHERE c.canonical = 1 AND c.number = b.number + 1)
    )
END
