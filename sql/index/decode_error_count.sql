-- Logs of canonical blocks that failed to decode, in all.
SELECT count(*) FROM decode_errors e JOIN blocks b ON b.id = e.block_id WHERE b.canonical = 1
