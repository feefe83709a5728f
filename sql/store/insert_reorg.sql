INSERT INTO reorgs (
    detected_at_ms, depth, fork_number, fork_hash, old_tip_number, old_tip_hash,
    new_tip_number, new_tip_hash, provider_id
)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
