-- Must match migrations/V1__chain.sql exactly (a test compares them).
CREATE INDEX IF NOT EXISTS transactions_hash ON transactions (substr(hash, 1, 8))
