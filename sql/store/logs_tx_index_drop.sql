-- Bulk loads drop the random-keyed logs-by-transaction index and rebuild it once at the end.
DROP INDEX IF EXISTS logs_tx
