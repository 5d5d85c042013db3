-- The PostgreSQL form of ../sqlite/0006_webhooks.sql:
-- the same tables, columns and indexes; the event position is a BIGSERIAL.
-- Webhooks: endpoints registered by device owners (device_id set) and the
-- admin (device_id NULL: every device's events), the outbox of events
-- (written in the transaction of the change each reports) and one
-- delivery row per endpoint and event.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    device_id TEXT,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    deleted_ms BIGINT
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_device ON webhook_endpoints(device_id, created_ms);
-- The last sequence number given to each subject (a session or a share).
CREATE TABLE IF NOT EXISTS webhook_subjects (
    subject TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_events (
    pos BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    seq BIGINT NOT NULL,
    device_id TEXT,
    created_ms BIGINT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (subject, seq)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    endpoint_id TEXT NOT NULL,
    event_pos BIGINT NOT NULL,
    subject TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    last_error TEXT,
    done_ms BIGINT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, event_pos)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(status, next_ms);
CREATE INDEX IF NOT EXISTS webhook_deliveries_subject ON webhook_deliveries(endpoint_id, subject, seq);
