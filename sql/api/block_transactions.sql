-- The stored transactions of the block with hash ?1, in block order.
SELECT * FROM api_transactions WHERE block_hash = ?1 ORDER BY transaction_index
