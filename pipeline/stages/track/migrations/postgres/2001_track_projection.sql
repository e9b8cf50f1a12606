-- The track stage's projection (PostgreSQL only). Timestamps are ms since the Unix epoch,
-- like the events. Overdue is never stored: it is derived from due_at at read time.

-- One row per dossier, merged from every event of it. Every column is merged so that the
-- result does not depend on delivery order (see pipeline/track/src/projection.rs).
CREATE TABLE track_dossiers (
    dossier_id      TEXT PRIMARY KEY,
    dossier_code    TEXT,
    procedure_code  TEXT,
    receiving_unit  TEXT,
    channel         TEXT,
    submitted_at    BIGINT,
    received_at     BIGINT,
    -- Competent unit and due time come together from the latest assignment
    -- (routing, supplement pause/resume); assign_at orders them.
    assign_at       BIGINT,
    competent_unit  TEXT,
    due_at          BIGINT,
    decided_at      BIGINT,
    decision        TEXT,
    completed_at    BIGINT,
    timeliness      TEXT,
    -- National status code 1..10, when it was reached, and the precedence key that decides
    -- whether a later-delivered event may replace it.
    status_code     INTEGER,
    status_at       BIGINT,
    status_key      BIGINT,
    last_event_at   BIGINT,
    -- The due time for which a deadline warning was last produced.
    warned_due_at   BIGINT
);

CREATE INDEX track_dossiers_code ON track_dossiers (dossier_code);
CREATE INDEX track_dossiers_received ON track_dossiers (received_at);
CREATE INDEX track_dossiers_completed ON track_dossiers (completed_at);
-- Open dossiers by unit and due time: unit load and deadline warnings.
CREATE INDEX track_dossiers_open_due ON track_dossiers (due_at)
    WHERE status_code IN (1, 2, 4, 5, 6);

-- One row per event ever applied; the event id makes redelivery a no-op.
CREATE TABLE track_history (
    event_id     TEXT PRIMARY KEY,
    dossier_id   TEXT NOT NULL,
    event        TEXT NOT NULL,
    status_code  INTEGER,
    stage        TEXT NOT NULL,
    reasons      JSONB NOT NULL,
    occurred_at  BIGINT NOT NULL
);

CREATE INDEX track_history_dossier ON track_history (dossier_id, occurred_at);
