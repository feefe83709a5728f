-- Export default time range of raw telemetry, ms (?1 unused).
SELECT min(ts_ms), max(ts_ms) FROM provider_requests WHERE ?1 IN (0, 1)
