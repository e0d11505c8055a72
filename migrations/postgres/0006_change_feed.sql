-- The change feed: every change of a request's status is announced on the channel
-- `breakglass_changes`, with the request id as the payload, so gateways in other processes
-- (replicas sharing this database) re-check their live sessions at once instead of at their
-- next poll. A trigger rather than a call in the application: no write path can forget it, and
-- NOTIFY inside the writing transaction is delivered at its commit, never for a rolled-back
-- write. PostgreSQL only: on SQLite everything runs in one process, which wakes its own
-- gateway (there is no SQLite step 0006).
CREATE FUNCTION breakglass_announce_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('breakglass_changes', NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER requests_announce_change
    AFTER UPDATE OF status ON requests
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION breakglass_announce_change();
