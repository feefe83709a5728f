-- ?1: JSON array of transactions; a block that becomes canonical again already has its rows.
INSERT INTO transactions (
    block_hash, idx, hash, from_address, to_address, value, nonce, gas, gas_price,
    max_fee_per_gas, max_priority_fee_per_gas, input, tx_type
)
SELECT
    unhex(j.value ->> 'b'),
    j.value ->> 'i',
    unhex(j.value ->> 'h'),
    unhex(j.value ->> 'f'),
    unhex(j.value ->> 'to'),
    j.value ->> 'v',
    j.value ->> 'n',
    j.value ->> 'g',
    j.value ->> 'gp',
    j.value ->> 'mf',
    j.value ->> 'mp',
    unhex(j.value ->> 'in'),
    j.value ->> 'ty'
FROM json_each(?1) AS j
WHERE true
ON CONFLICT DO NOTHING
