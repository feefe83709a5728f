-- Must match migrations/V8__receipts_logs.sql exactly (a test compares them).
CREATE INDEX IF NOT EXISTS logs_tx ON logs (substr(tx_hash, 1, 8))
