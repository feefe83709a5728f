-- Every provider this database has seen, in registration order.
SELECT id, name, url_redacted FROM providers ORDER BY id
