-- Webhook retention: old events are found by their time.
CREATE INDEX IF NOT EXISTS webhook_events_created ON webhook_events(created_ms);
