-- Must match migrations/V8__receipts_logs.sql exactly (a test compares them).
CREATE INDEX IF NOT EXISTS receipts_tx_hash ON receipts (substr(tx_hash, 1, 8))
