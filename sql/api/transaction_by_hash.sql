-- Every stored copy of transaction ?1 (32 bytes), canonical block first (a tx may sit in an
-- orphaned block too). The 8-byte prefix matches the transactions_hash index.
SELECT * FROM api_transactions
WHERE substr(hash, 1, 8) = substr(?1, 1, 8) AND hash = ?1
ORDER BY canonical DESC, block_number DESC
