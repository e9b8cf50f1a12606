-- Same tables as migrations/postgres/2001_track_projection.sql, in SQLite's dialect
-- (reasons are JSON text). Used by the embedded demo; production runs PostgreSQL.
CREATE TABLE track_dossiers (
    dossier_id      TEXT PRIMARY KEY,
    dossier_code    TEXT,
    procedure_code  TEXT,
    receiving_unit  TEXT,
    channel         TEXT,
    submitted_at    INTEGER,
    received_at     INTEGER,
    assign_at       INTEGER,
    competent_unit  TEXT,
    due_at          INTEGER,
    decided_at      INTEGER,
    decision        TEXT,
    completed_at    INTEGER,
    timeliness      TEXT,
    status_code     INTEGER,
    status_at       INTEGER,
    status_key      INTEGER,
    last_event_at   INTEGER,
    warned_due_at   INTEGER
);

CREATE INDEX track_dossiers_code ON track_dossiers (dossier_code);
CREATE INDEX track_dossiers_received ON track_dossiers (received_at);
CREATE INDEX track_dossiers_completed ON track_dossiers (completed_at);
CREATE INDEX track_dossiers_open_due ON track_dossiers (due_at)
    WHERE status_code IN (1, 2, 4, 5, 6);

CREATE TABLE track_history (
    event_id     TEXT PRIMARY KEY,
    dossier_id   TEXT NOT NULL,
    event        TEXT NOT NULL,
    status_code  INTEGER,
    stage        TEXT NOT NULL,
    reasons      TEXT NOT NULL,
    occurred_at  INTEGER NOT NULL
);

CREATE INDEX track_history_dossier ON track_history (dossier_id, occurred_at);
