-- Blocks stored (canonical or not): what a rebuilt hash index would have to cover.
SELECT count(*) FROM blocks
