-- Export default range of gap repairs by first height (?1 unused).
SELECT min(from_number), max(from_number) FROM gap_repairs WHERE ?1 IN (0, 1)
