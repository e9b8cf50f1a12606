-- Dossiers verify handed to an officer (a registry down past the escalation age, or an
-- answer it cannot judge): kept with the dossier as accepted until an officer verifies
-- it by hand (`motcua dossiers verify`), who is recorded with the time and a note.
CREATE TABLE verify_escalated (
    dossier_id      TEXT PRIMARY KEY,
    dossier_code    TEXT NOT NULL,
    payload         BYTEA NOT NULL,          -- the dossier.accepted message (Confluent framing)
    escalated_at_ms BIGINT NOT NULL,
    reason          TEXT NOT NULL,        -- why (the registry's failure; no personal data)
    verified_by     TEXT,                 -- the officer's account id
    verified_at_ms  BIGINT,
    note            TEXT
);
CREATE UNIQUE INDEX verify_escalated_code ON verify_escalated (dossier_code);
