-- Keep the worst value seen while the alert is open.
UPDATE alerts SET peak = max(peak, ?3)
WHERE kind = ?1 AND subject = ?2 AND ended_at_ms IS NULL
