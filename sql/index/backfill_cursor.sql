-- A table's backfill reached height ?2 (NULL: done).
UPDATE event_tables SET backfill_cursor = ?2 WHERE name = ?1
