-- Bulk loads drop the random-keyed tx-hash index and rebuild it once at the end (sorted, fast).
DROP INDEX IF EXISTS transactions_hash
