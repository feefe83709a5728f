-- A reorg message was acknowledged: its dropped block ?2 was undone once more.
INSERT INTO sink_undone (sink, hash, times) VALUES (?1, ?2, 1)
ON CONFLICT (sink, hash) DO UPDATE SET times = times + 1
