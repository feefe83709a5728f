SELECT hash FROM blocks WHERE canonical = 1 AND number = ?1
