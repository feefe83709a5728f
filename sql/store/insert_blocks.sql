-- ?1: JSON array of blocks (hashes as hex without 0x); one statement per commit batch.
INSERT INTO blocks (
    hash, number, parent_hash, timestamp, miner, gas_used, gas_limit, base_fee_per_gas,
    state_root, transactions_root, receipts_root, size, tx_count, full_txs, canonical, hash_verified,
    provider_id, fetched_at_ms
)
SELECT
    unhex(j.value ->> 'h'),
    j.value ->> 'n',
    unhex(j.value ->> 'p'),
    j.value ->> 't',
    unhex(j.value ->> 'm'),
    j.value ->> 'gu',
    j.value ->> 'gl',
    j.value ->> 'bf',
    unhex(j.value ->> 'sr'),
    unhex(j.value ->> 'tr'),
    unhex(j.value ->> 'rr'),
    j.value ->> 'sz',
    j.value ->> 'tc',
    j.value ->> 'ft',
    1,
    j.value ->> 'hv',
    j.value ->> 'pid',
    j.value ->> 'fa'
FROM json_each(?1) AS j
WHERE true
ON CONFLICT (hash) DO UPDATE SET canonical = 1
