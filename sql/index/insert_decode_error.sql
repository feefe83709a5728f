-- A log that did not decode as a table's event; the raw log stays in `logs`.
INSERT INTO decode_errors (block_id, log_index, event_table, error)
VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING
