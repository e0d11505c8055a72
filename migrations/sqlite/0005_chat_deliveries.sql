-- Chat deliveries already handled, so that a signed request replayed within its 5-minute window
-- is refused on every replica and after a restart. `delivery_id` is the SHA-256 of Slack's
-- signature and timestamp, or Discord's interaction id. A row is kept until the window has
-- surely closed (`expires_at`, Unix seconds), then the reaper deletes it.
CREATE TABLE chat_deliveries (
    platform    TEXT   NOT NULL,
    delivery_id TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (platform, delivery_id)
);
CREATE INDEX chat_deliveries_expiry ON chat_deliveries (expires_at);
