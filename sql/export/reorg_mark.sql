-- The newest reorg so far: an export notes it before reading a range of heights.
SELECT coalesce(max(id), 0) FROM reorgs
