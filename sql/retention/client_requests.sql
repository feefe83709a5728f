-- Retention: delete up to ?2 /rpc call rows older than ?1 (ms), oldest first.
DELETE FROM client_requests
WHERE id IN (SELECT id FROM client_requests WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)
