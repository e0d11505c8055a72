-- The change feed (../postgres/0006_change_feed.sql) tells gateways in other processes of a
-- request's change. On SQLite every component runs in one process (`breakglass up`), which wakes
-- its gateway in-process: there is nothing to do here. The step exists so that both backends
-- number their migrations alike.
SELECT 1;
