-- The latest word on one provider's support of one method.
INSERT INTO provider_capabilities (provider_id, method, supported, max_block_range, learned_at_ms, detail)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (provider_id, method) DO UPDATE SET
    supported = excluded.supported,
    max_block_range = excluded.max_block_range,
    learned_at_ms = excluded.learned_at_ms,
    detail = excluded.detail
