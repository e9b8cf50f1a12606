-- Where each dossier was routed. Keyed by dossier id: a redelivered dossier keeps its
-- first assignment (same desk, same due time), whatever the loads are by then. Open
-- assignments per desk are the desk loads the router balances.
CREATE TABLE routing_assignments (
    dossier_id      TEXT PRIMARY KEY,
    authority_code  TEXT NOT NULL,
    desk_code       TEXT NOT NULL,
    transferred     BOOLEAN NOT NULL,
    due_at_ms       BIGINT NOT NULL,
    routed_at_ms    BIGINT NOT NULL,
    closed          BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX routing_assignments_open ON routing_assignments (authority_code, desk_code) WHERE NOT closed;
