-- What each provider was found to support, the latest word per provider and method (a
-- method answered "not supported", or the widest eth_getLogs range accepted). Each change is
-- also a `capability` provider event; this table is what the next run starts from.

CREATE TABLE provider_capabilities (
    provider_id     INTEGER NOT NULL REFERENCES providers (id),
    -- eth_getBlockReceipts | eth_getLogs
    method          TEXT NOT NULL,
    supported       INTEGER NOT NULL CHECK (supported IN (0, 1)),
    -- eth_getLogs: the widest block range known to be accepted; NULL: no limit met
    max_block_range INTEGER CHECK (max_block_range IS NULL OR max_block_range > 0),
    learned_at_ms   INTEGER NOT NULL,
    detail          TEXT NOT NULL,
    PRIMARY KEY (provider_id, method)
) STRICT;

CREATE VIEW provider_capabilities_view AS
SELECT p.name AS provider, c.method, c.supported, c.max_block_range, c.learned_at_ms, c.detail
FROM provider_capabilities c
JOIN providers p ON p.id = c.provider_id;
