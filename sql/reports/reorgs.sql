-- Reorg history, newest first: when it was seen, how deep, the fork point and the old and
-- new tips, which provider served the new branch, and how many blocks of the old branch are
-- stored as orphaned (canonical = 0) between the fork and the old tip.
-- Run it: blockstreamer sql -f sql/reports/reorgs.sql
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', r.detected_at_ms / 1000.0, 'unixepoch') AS detected_at,
       r.depth, r.fork_number, r.fork_hash, r.old_tip_number, r.old_tip_hash, r.new_tip_number, r.new_tip_hash,
       r.provider,
       (SELECT count(*) FROM blocks b
         WHERE b.canonical = 0 AND b.number > r.fork_number AND b.number <= r.old_tip_number) AS orphaned_stored
FROM reorgs_view r
ORDER BY r.detected_at_ms DESC, r.id DESC
