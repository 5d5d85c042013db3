-- Delivery claims: the server (node) that took a pending delivery to send
-- it, and until when its claim holds (Unix ms). Another node takes a
-- delivery over only once the claim has expired; one whose send was under
-- way when its node died becomes `unknown` (never sent twice).
ALTER TABLE share_deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE share_deliveries ADD COLUMN claim_until_ms BIGINT;
-- The same for webhook deliveries (a claim spans an attempt; a webhook is
-- delivered at least once, so one taken over mid-attempt may arrive twice,
-- with the same webhook-id).
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claim_until_ms BIGINT;
