-- Whether a sink ever undid a block (most never do: then no per-block lookups).
SELECT EXISTS (SELECT 1 FROM sink_undone WHERE sink = ?1)
