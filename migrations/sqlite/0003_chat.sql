-- Chat threads: the card each chat-made request has in its channel, and how far the chat
-- mirrors the request's audit events. Keep in step with ../postgres/0003_chat.sql.
CREATE TABLE chat_threads (
    request_id      TEXT    NOT NULL PRIMARY KEY REFERENCES requests (id),
    platform        TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    -- Slack: the card's ts; Discord: the card message id. NULL until posted.
    message_id      TEXT    NULL,
    -- Discord: the thread started from the card. Slack threads hang off message_id.
    thread_id       TEXT    NULL,
    -- The last audit event (seq) mirrored into the card and its thread.
    synced_seq      BIGINT  NOT NULL,
    connect_sent    BOOLEAN NOT NULL,
    summary_sent    BOOLEAN NOT NULL,
    done            BOOLEAN NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    -- One replica at a time works on a thread: it holds the lease until then.
    lease_until     BIGINT  NOT NULL
);
CREATE INDEX chat_threads_due ON chat_threads (done, next_attempt_at);
CREATE INDEX audit_events_request ON audit_events (request_id, seq);
