-- How many times a sink undid block ?2 (no row: never).
SELECT times FROM sink_undone WHERE sink = ?1 AND hash = ?2
