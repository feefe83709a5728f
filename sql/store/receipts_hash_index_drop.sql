-- Bulk loads drop the random-keyed receipts-by-hash index and rebuild it once at the end.
DROP INDEX IF EXISTS receipts_tx_hash
