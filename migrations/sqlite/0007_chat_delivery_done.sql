-- (SQLite numbers its migrations apart: PostgreSQL has the change feed as 0006.)
-- A click is remembered as taken (`done` FALSE, `taken_at` Unix seconds) before it runs and
-- marked done after. A copy of a delivery that is done is a replay (refused); a copy of one
-- taken long ago and never done is the platform resending what a replica died handling, and
-- runs (a click is idempotent through the request's state machine). Rows from before are done.
ALTER TABLE chat_deliveries ADD COLUMN done BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE chat_deliveries ADD COLUMN taken_at BIGINT NOT NULL DEFAULT 0;
