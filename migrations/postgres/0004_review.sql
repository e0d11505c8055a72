-- The web reviewer page: single-use sign-in links and browser sessions. Only SHA-256 hashes of
-- the link tokens and session ids are stored, never the values themselves.
CREATE TABLE review_links (
    token_sha256 TEXT   NOT NULL PRIMARY KEY,
    principal    TEXT   NOT NULL,
    -- The request the link opens (its code), or NULL for the list.
    request_code TEXT   NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT NULL
);

CREATE TABLE review_sessions (
    id_sha256  TEXT   NOT NULL PRIMARY KEY,
    principal  TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- What command search looks in: the command or exec text, lower-cased by the application (the
-- same folding on both backends); NULL for other events.
ALTER TABLE session_events ADD COLUMN command_folded TEXT NULL;
CREATE INDEX session_events_kind ON session_events (kind, at);
