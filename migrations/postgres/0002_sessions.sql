-- Sessions through the gateway: what happened inside them, and their signed recordings.
-- Keep in step with ../sqlite/0002_sessions.sql.

CREATE TABLE session_events (
    request_id TEXT   NOT NULL REFERENCES requests (id),
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    offset_ms  BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    detail     TEXT   NOT NULL,
    PRIMARY KEY (request_id, seq)
);

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
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER session_events_no_delete BEFORE DELETE OR TRUNCATE ON session_events
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER recordings_no_update BEFORE UPDATE ON recordings
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
CREATE TRIGGER recordings_no_delete BEFORE DELETE OR TRUNCATE ON recordings
    FOR EACH STATEMENT EXECUTE FUNCTION breakglass_append_only();
