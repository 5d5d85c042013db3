-- Share links, the persisted delivery queue, subscriptions and STOP replies.
CREATE TABLE IF NOT EXISTS shares (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    asset_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_key TEXT UNIQUE,
    attributes TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    revoked_ms BIGINT,
    public INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS shares_device ON shares(device_id, created_ms);
-- (SQLite's rowid; PostgreSQL's migrations use an identity column.)
CREATE TABLE IF NOT EXISTS share_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    share_id TEXT NOT NULL,
    event_key TEXT NOT NULL,
    recipient TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    sent_ms BIGINT,
    parts INTEGER,
    UNIQUE(event_key, recipient, format)
);
CREATE INDEX IF NOT EXISTS share_deliveries_due ON share_deliveries(status, next_ms);
CREATE INDEX IF NOT EXISTS share_deliveries_share ON share_deliveries(share_id);
CREATE TABLE IF NOT EXISTS share_subscriptions (
    device_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, recipient)
);
-- Numbers that replied STOP: no message of any device reaches them until
-- they reply START. Keyed by the digits alone.
CREATE TABLE IF NOT EXISTS share_opt_outs (
    digits TEXT PRIMARY KEY,
    updated_ms BIGINT NOT NULL
);
