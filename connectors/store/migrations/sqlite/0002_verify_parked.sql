CREATE TABLE verify_parked (
    dossier_id       TEXT PRIMARY KEY,
    payload          BLOB NOT NULL,
    parked_at_ms     INTEGER NOT NULL,
    next_attempt_ms  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL
);
CREATE INDEX verify_parked_due ON verify_parked (next_attempt_ms);
