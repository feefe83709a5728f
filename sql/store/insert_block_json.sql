-- One block's kept JSON; a block stored again keeps what it has and gains what it lacked.
INSERT INTO block_json (block_id, block, receipts, logs)
VALUES (?, ?, ?, ?)
ON CONFLICT (block_id) DO UPDATE SET receipts = coalesce(receipts, excluded.receipts), logs = coalesce(logs, excluded.logs)
