-- The selection or the mode changed: blocks whose stored logs do not cover the new selection
-- (?1 = its id; 1 is every log) are waiting for them again. ?2 = 2 when filtered logs
-- (receipts state 2) are enough, 1 when receipts are required.
UPDATE blocks SET receipts = 0
WHERE canonical = 1 AND tx_count > 0 AND receipts <> 0
  AND NOT (
      (receipts = 1 AND logs_selection = 1)
      OR (receipts IN (1, ?2) AND logs_selection = ?1)
  )
