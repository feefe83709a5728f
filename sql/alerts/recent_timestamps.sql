-- Timestamps of the newest ?1 canonical blocks (the block-time estimate for no_new_block).
SELECT timestamp FROM blocks WHERE canonical = 1 ORDER BY number DESC LIMIT ?1
