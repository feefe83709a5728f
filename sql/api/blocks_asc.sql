-- Canonical blocks with ?1 <= number <= ?2, lowest first, at most ?3.
SELECT b.number, b.hash, b.parent_hash, b.timestamp, b.miner, b.gas_used, b.gas_limit, CAST(b.base_fee_per_gas AS TEXT), b.state_root, b.transactions_root, b.receipts_root, b.size, b.tx_count, b.full_txs, b.canonical, b.hash_verified, (SELECT name FROM providers p WHERE p.id = b.provider_id), b.fetched_at_ms
FROM blocks b WHERE b.canonical = 1 AND b.number >= ?1 AND b.number <= ?2 ORDER BY b.number LIMIT ?3
