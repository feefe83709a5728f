-- A block's receipts and logs are now stored: ?1 = row id, ?2 = receipts_verified,
-- ?3 = receipts state (1 receipts, 2 filtered logs), ?4 = the log selection they were kept by.
UPDATE blocks SET receipts = ?3, receipts_verified = ?2, logs_selection = ?4 WHERE id = ?1
