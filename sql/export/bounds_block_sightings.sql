-- Export default range of block sightings (?1 unused).
SELECT min(number), max(number) FROM block_sightings WHERE ?1 IN (0, 1)
