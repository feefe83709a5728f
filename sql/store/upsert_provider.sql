INSERT INTO providers (name, url_redacted, added_at_ms)
VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET url_redacted = excluded.url_redacted
RETURNING id
