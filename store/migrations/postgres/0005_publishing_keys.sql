-- The PostgreSQL form of ../sqlite/0005_publishing_keys.sql:
-- the same tables, columns and indexes; integers read as i64 are BIGINT,
-- 0/1 flags stay INTEGER.
-- Publishing keys: what RTMP publishers present as stream key. A key can
-- only publish, as its device; it is stored as its SHA-256 and revoked
-- apart from the device's token.
CREATE TABLE IF NOT EXISTS publishing_keys (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE INDEX IF NOT EXISTS publishing_keys_device ON publishing_keys(device_id, created_ms);
