-- Every registry lookup: who asked, what, when, for which dossier, and what came back.
CREATE TABLE registry_audit (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    caller      TEXT NOT NULL,
    dossier_id  TEXT NOT NULL,
    registry    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    outcome     TEXT NOT NULL,   -- found, not_found, refused, unavailable
    cached      BOOLEAN NOT NULL,
    attempts    INTEGER NOT NULL,
    latency_ms  INTEGER NOT NULL
);
CREATE INDEX registry_audit_dossier ON registry_audit (dossier_id);
CREATE INDEX registry_audit_at ON registry_audit (at);
