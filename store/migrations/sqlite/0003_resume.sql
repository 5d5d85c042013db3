-- Users and their terminals, history across terminals, hand-off states and
-- bookmarks.
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS terminals (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    content_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    terminal_type TEXT NOT NULL,
    live INTEGER NOT NULL,
    position_ms BIGINT,
    breakpoint_unix_ms BIGINT,
    abnormal INTEGER NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_user ON history(user_id, created_ms);
CREATE TABLE IF NOT EXISTS resume_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    history_id TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS suspend_states (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
-- status: ready, rendition (named in `rendition`), transcoding,
-- transcode_failed, fetching, fetch_failed (their job in `job_id`),
-- needs_transcode. access_until_ms: until when the live access its creator
-- proved lasts (NULL: none).
CREATE TABLE IF NOT EXISTS bookmarks (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    content_id TEXT NOT NULL,
    position_ms BIGINT NOT NULL,
    name TEXT,
    description TEXT,
    source TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    access_until_ms BIGINT,
    job_id TEXT,
    rendition TEXT
);
CREATE INDEX IF NOT EXISTS bookmarks_user ON bookmarks(user_id, created_ms);
CREATE INDEX IF NOT EXISTS bookmarks_job ON bookmarks(job_id);
