-- breakglass schema, SQLite flavour. Keep it in step with ../postgres/0001_init.sql: the two
-- differ only where the dialects do (trigger syntax). Every column says NULL or NOT NULL.
--
-- Times are Unix seconds (BIGINT). Ids, names, nonces, key ids, signatures and hashes are TEXT
-- (UUIDs and lowercase hex), parsed back into core types by the adapter.

-- One row per break-glass request; `version` is the optimistic-concurrency counter.
CREATE TABLE requests (
    id            TEXT   NOT NULL PRIMARY KEY,
    code          TEXT   NOT NULL UNIQUE,
    requester     TEXT   NOT NULL,
    scope         TEXT   NOT NULL,
    host          TEXT   NOT NULL,
    login         TEXT   NOT NULL,
    duration_secs BIGINT NOT NULL,
    reason        TEXT   NOT NULL,
    nonce         TEXT   NOT NULL,
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    pending_until BIGINT NOT NULL,
    -- serde_json of core::Origin, e.g. {"via":"slack","channel":"C0INCIDENT"}
    origin        TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    closed_by     TEXT   NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
CREATE INDEX requests_status ON requests (status);
CREATE INDEX requests_requester ON requests (requester);
CREATE INDEX requests_newest ON requests (created_at, id);

-- Signed approvals. One per approver per request, and a signature is never reused.
-- `position` is the order in which approvals were recorded (0, 1, ...).
CREATE TABLE approvals (
    request_id  TEXT   NOT NULL REFERENCES requests (id),
    position    BIGINT NOT NULL,
    approver    TEXT   NOT NULL,
    key_id      TEXT   NOT NULL,
    signed_at   BIGINT NOT NULL,
    signature   TEXT   NOT NULL UNIQUE,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver),
    UNIQUE (request_id, position)
);

-- A nonce is consumed by the one session its approvals allow; the primary key makes a second
-- use impossible.
CREATE TABLE consumed_nonces (
    nonce       TEXT   NOT NULL PRIMARY KEY,
    request_id  TEXT   NOT NULL REFERENCES requests (id),
    consumed_at BIGINT NOT NULL
);

-- The audit log, a SHA-256 hash chain (see shared/src/core/audit.rs). `seq` is assigned by the
-- writer as head + 1, so two writers can never both append the same link.
CREATE TABLE audit_events (
    seq        BIGINT NOT NULL PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    request_id TEXT   NULL,
    actor      TEXT   NOT NULL,
    -- the JSON text exactly as hashed
    data       TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);

-- Append-only, enforced by the database as well as by the adapter (which never updates or
-- deletes these tables). Someone with DDL rights can drop the triggers; the hash chain still
-- shows any edit made after that.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER approvals_no_update BEFORE UPDATE ON approvals
BEGIN
    SELECT RAISE(ABORT, 'approvals is append-only');
END;
CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
BEGIN
    SELECT RAISE(ABORT, 'approvals is append-only');
END;
CREATE TRIGGER consumed_nonces_no_update BEFORE UPDATE ON consumed_nonces
BEGIN
    SELECT RAISE(ABORT, 'consumed_nonces is append-only');
END;
CREATE TRIGGER consumed_nonces_no_delete BEFORE DELETE ON consumed_nonces
BEGIN
    SELECT RAISE(ABORT, 'consumed_nonces is append-only');
END;
