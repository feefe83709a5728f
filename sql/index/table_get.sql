-- A decoded table's registry row: what it was made from, and its backfill's progress.
SELECT signature, addresses, start_block, backfill_cursor, backfill_until
FROM event_tables WHERE name = ?1
