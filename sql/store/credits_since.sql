-- Credits spent per provider since ?1 (ms): seeds the budgets after a restart.
SELECT provider_id, coalesce(sum(credits), 0) FROM provider_requests WHERE ts_ms >= ?1 GROUP BY provider_id
