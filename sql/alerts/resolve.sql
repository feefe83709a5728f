-- Resolve the open alert of kind ?1 for subject ?2 at ?3 ms.
UPDATE alerts SET ended_at_ms = max(?3, started_at_ms)
WHERE kind = ?1 AND subject = ?2 AND ended_at_ms IS NULL
