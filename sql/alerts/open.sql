-- Open an alert (at most one open per kind and subject: the partial unique index refuses a second).
INSERT INTO alerts (kind, subject, started_at_ms, value, peak, threshold, message)
VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)
RETURNING id
