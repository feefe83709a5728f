-- Every provider's learned capabilities, by provider name and method.
SELECT provider, method, supported, max_block_range, learned_at_ms, detail
FROM provider_capabilities_view
ORDER BY provider, method
