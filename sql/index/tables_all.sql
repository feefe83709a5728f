-- Every registered decoded table, with its row count source (for /v1/events).
SELECT name, contract, signature, addresses, start_block, columns, backfill_cursor, backfill_until
FROM event_tables ORDER BY name
