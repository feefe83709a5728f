-- The newest raw telemetry row id (0 when empty).
SELECT coalesce(max(id), 0) FROM provider_requests
