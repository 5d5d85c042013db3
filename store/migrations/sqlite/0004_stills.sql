-- Still-frame shares.
CREATE TABLE IF NOT EXISTS stills (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    content_id TEXT NOT NULL,
    t_ms BIGINT NOT NULL,
    comment TEXT,
    name TEXT NOT NULL,
    enhanced INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created_ms BIGINT NOT NULL
);
