-- The PostgreSQL form of ../sqlite/0004_stills.sql:
-- the same tables, columns and indexes; integers read as i64 are BIGINT,
-- 0/1 flags stay INTEGER.
-- Still-frame shares.
CREATE TABLE IF NOT EXISTS stills (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    content_id TEXT NOT NULL,
    t_ms BIGINT NOT NULL,
    comment TEXT,
    name TEXT NOT NULL,
    enhanced INTEGER NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
