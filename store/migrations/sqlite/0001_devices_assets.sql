-- Phones allowed to upload, and their recordings.
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS assets (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    title TEXT,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    ready_ms BIGINT,
    attributes TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS assets_created ON assets(created_ms);
CREATE INDEX IF NOT EXISTS assets_device ON assets(device_id, created_ms);
