-- Every decoded table of the file (for the list of exportable tables).
SELECT name FROM event_tables ORDER BY name
