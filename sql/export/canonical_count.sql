-- How many heights in ?1..=?2 have a canonical block (an export chunk is complete when all do).
SELECT count(*) FROM blocks WHERE canonical = 1 AND number BETWEEN ?1 AND ?2
