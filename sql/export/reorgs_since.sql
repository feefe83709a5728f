-- The lowest fork point among reorgs recorded after ?1 (NULL if none): every height above it
-- may have changed since an export noted ?1.
SELECT min(fork_number) FROM reorgs WHERE id > ?1
