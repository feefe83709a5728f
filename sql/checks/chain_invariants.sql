-- Invariants of the stored canonical chain, one row. All but `heights` must be 0.
-- missing: heights absent between the lowest and highest canonical block
-- dups: heights with more than one canonical block (the partial unique index forbids it)
-- link_breaks: canonical blocks whose parent_hash is not the hash of the canonical block below
-- partial: canonical blocks with fewer transaction rows than tx_count
WITH c AS (SELECT id, number, hash, parent_hash, tx_count, full_txs FROM blocks WHERE canonical = 1)
SELECT
    (SELECT count(*) FROM c) AS heights,
    (SELECT coalesce(max(number) - min(number) + 1 - count(DISTINCT number), 0) FROM c) AS missing,
    (SELECT count(*) FROM (SELECT number FROM c GROUP BY number HAVING count(*) > 1)) AS dups,
    (SELECT count(*) FROM c cur JOIN c prev ON prev.number = cur.number - 1
      WHERE cur.parent_hash <> prev.hash) AS link_breaks,
    (SELECT count(*) FROM c
      WHERE c.full_txs = 1
        AND (SELECT count(*) FROM transactions t WHERE t.block_id = c.id) <> c.tx_count) AS partial
