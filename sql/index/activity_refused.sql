-- Receipts and logs answers refused since ?1 (ms), per provider and method: how many, when
-- last, and the last reason (forged, withheld or inconsistent logs and receipts).
SELECT p.name, r.method, count(*), max(r.ts_ms),
       (SELECT x.error FROM provider_requests x
        WHERE x.provider_id = r.provider_id AND x.method = r.method AND x.outcome = 'invalid_response' AND x.ts_ms >= ?1
        ORDER BY x.ts_ms DESC LIMIT 1)
FROM provider_requests r
JOIN providers p ON p.id = r.provider_id
WHERE r.ts_ms >= ?1 AND r.outcome = 'invalid_response'
  AND r.method IN ('eth_getBlockReceipts', 'eth_getTransactionReceipt', 'eth_getLogs')
GROUP BY r.provider_id, r.method
ORDER BY 3 DESC
