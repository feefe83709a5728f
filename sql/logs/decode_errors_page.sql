-- Logs that did not decode, newest first, optionally of one table (?1), before (block ?2, log
-- index ?3), at most ?4.
SELECT block_number, block_hash, transaction_index, transaction_hash, log_index, address, topic0, event_table, error
FROM decode_errors_view
WHERE (?1 IS NULL OR event_table = ?1) AND (block_number, log_index) < (?2, ?3)
ORDER BY block_number DESC, log_index DESC
LIMIT ?4
