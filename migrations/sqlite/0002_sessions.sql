-- Sessions through the gateway: what happened inside them, and their signed recordings.
-- Keep in step with ../postgres/0002_sessions.sql.

-- Commands, exec requests, file transfers, refused forwards... in the order they happened.
-- `offset_ms` is the time since the session started (the recording's clock).
CREATE TABLE session_events (
    request_id TEXT   NOT NULL REFERENCES requests (id),
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    offset_ms  BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    -- JSON, e.g. {"command":"systemctl status"}
    detail     TEXT   NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- One recording per session (a grant opens one session), with the SHA-256 of the asciicast
-- file and the gateway's Ed25519 signature over it.
CREATE TABLE recordings (
    request_id  TEXT   NOT NULL PRIMARY KEY REFERENCES requests (id),
    file        TEXT   NOT NULL,
    sha256      TEXT   NOT NULL,
    signature   TEXT   NOT NULL,
    key_id      TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT NOT NULL,
    end_reason  TEXT   NOT NULL,
    exit_status BIGINT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    commands    BIGINT NOT NULL
);

CREATE TRIGGER session_events_no_update BEFORE UPDATE ON session_events
BEGIN
    SELECT RAISE(ABORT, 'session_events is append-only');
END;
CREATE TRIGGER session_events_no_delete BEFORE DELETE ON session_events
BEGIN
    SELECT RAISE(ABORT, 'session_events is append-only');
END;
CREATE TRIGGER recordings_no_update BEFORE UPDATE ON recordings
BEGIN
    SELECT RAISE(ABORT, 'recordings is append-only');
END;
CREATE TRIGGER recordings_no_delete BEFORE DELETE ON recordings
BEGIN
    SELECT RAISE(ABORT, 'recordings is append-only');
END;
