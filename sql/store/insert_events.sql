-- One routing decision; the telemetry writer repeats the VALUES tuple per batch.
INSERT INTO provider_events (ts_ms, provider_id, kind, reason)
VALUES (?, ?, ?, ?)
