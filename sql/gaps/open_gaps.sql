-- Holes in the canonical chain below the stored head: each row is one missing range.
-- ?1 = lowest height to look at (the first height this database was asked to keep).
SELECT prev + 1 AS from_number, number - 1 AS to_number
FROM (
    SELECT number, lag(number) OVER (ORDER BY number) AS prev
    FROM blocks
    WHERE canonical = 1 AND number >= ?1
)
WHERE prev IS NOT NULL AND number > prev + 1
ORDER BY from_number
