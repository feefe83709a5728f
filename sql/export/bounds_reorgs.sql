-- Export default range of reorgs by fork height (?1 unused).
SELECT min(fork_number), max(fork_number) FROM reorgs WHERE ?1 IN (0, 1)
