-- A decoded table's recorded columns, for its export: ?1 the table name.
SELECT columns FROM event_tables WHERE name = ?1
