CREATE TABLE routing_assignments (
    dossier_id      TEXT PRIMARY KEY,
    authority_code  TEXT NOT NULL,
    desk_code       TEXT NOT NULL,
    transferred     INTEGER NOT NULL,
    due_at_ms       INTEGER NOT NULL,
    routed_at_ms    INTEGER NOT NULL,
    closed          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX routing_assignments_open ON routing_assignments (authority_code, desk_code, closed);
