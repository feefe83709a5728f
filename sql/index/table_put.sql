-- Register (or re-register, after its definition changed) a decoded table.
INSERT INTO event_tables (
    name, contract, signature, topic0, addresses, start_block, columns, created_at_ms, backfill_cursor, backfill_until
)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (name) DO UPDATE SET
    contract = excluded.contract, signature = excluded.signature, topic0 = excluded.topic0,
    addresses = excluded.addresses, start_block = excluded.start_block, columns = excluded.columns,
    created_at_ms = excluded.created_at_ms, backfill_cursor = excluded.backfill_cursor,
    backfill_until = excluded.backfill_until
