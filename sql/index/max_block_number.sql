-- The highest stored height (canonical or not): where a new table's backfill ends.
SELECT max(number) FROM blocks
