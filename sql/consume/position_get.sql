-- Where `consume` stands in a stream: the sequence of the last message applied.
SELECT stream_seq, messages FROM consumer_positions WHERE stream = ?1
