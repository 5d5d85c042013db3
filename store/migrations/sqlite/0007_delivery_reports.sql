-- Delivery reports: the SMS parts of a delivery the network reported
-- delivered to the phone, one bit per part (bit n = part n, 0-based).
-- A delivery all of whose parts are delivered becomes `delivered`.
ALTER TABLE share_deliveries ADD COLUMN delivered_parts BIGINT NOT NULL DEFAULT 0;
