-- Lowest and highest canonical height stored.
SELECT min(number), max(number) FROM blocks WHERE canonical = 1
