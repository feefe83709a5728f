-- A block's receipts and logs are now stored: ?1 = row id, ?2 = receipts_verified.
UPDATE blocks SET receipts = 1, receipts_verified = ?2 WHERE id = ?1
