-- ?1: JSON array of request samples, written by the telemetry writer in one statement per flush.
INSERT INTO provider_requests (
    ts_ms, provider_id, method, block_number, latency_us, outcome, http_status, rpc_code,
    bytes, head_reported, attempt, hedged, batch_size, error
)
SELECT
    j.value ->> 'ts', j.value ->> 'p', j.value ->> 'm', j.value ->> 'bn', j.value ->> 'l',
    j.value ->> 'o', j.value ->> 'hs', j.value ->> 'rc', j.value ->> 'by', j.value ->> 'hr',
    j.value ->> 'a', j.value ->> 'hd', j.value ->> 'bs', j.value ->> 'e'
FROM json_each(?1) AS j
