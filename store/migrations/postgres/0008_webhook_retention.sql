-- The PostgreSQL form of ../sqlite/0008_webhook_retention.sql (the same).
-- Webhook retention: old events are found by their time.
CREATE INDEX IF NOT EXISTS webhook_events_created ON webhook_events(created_ms);
