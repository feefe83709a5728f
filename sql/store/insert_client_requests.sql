-- One /rpc call; the telemetry writer repeats the VALUES tuple per batch.
INSERT INTO client_requests (ts_ms, key_name, method, source, latency_us, outcome, rpc_code, bytes, batch_size)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
