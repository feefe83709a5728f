-- About how many blocks the file holds (the highest row id: every block ever stored, without
-- scanning the table): what a rebuilt hash index would have to cover.
SELECT coalesce(max(id), 0) FROM blocks
