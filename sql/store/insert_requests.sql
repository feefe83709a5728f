-- One row per JSON-RPC call attempt; the telemetry writer repeats the VALUES tuple per batch.
INSERT INTO provider_requests (
    ts_ms, provider_id, method, block_number, latency_us, outcome, http_status, rpc_code,
    bytes, head_reported, attempt, hedged, batch_size, error, credits
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
