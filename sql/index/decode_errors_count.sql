-- Decode errors per table.
SELECT event_table, count(*) FROM decode_errors GROUP BY event_table ORDER BY event_table
