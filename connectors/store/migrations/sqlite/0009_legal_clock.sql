-- The legal clock (issue 15): supplement waits, the ends of dossiers, and what a due
-- time was computed from.

-- A dossier waiting for the citizen's papers. The step that asked writes the row with
-- the message to resume the dossier with; intake owns the rest of its life (the answer,
-- the stop when none comes). One row per request; at most one waiting row per dossier.
CREATE TABLE supplement_waits (
    request_event_id TEXT PRIMARY KEY,       -- the status event that asked (idempotency)
    dossier_id       TEXT NOT NULL,
    dossier_code     TEXT,                   -- NULL when intake asked before giving a code
    step             TEXT NOT NULL,          -- intake | verify | backoffice
    requested_at_ms  INTEGER NOT NULL,
    payload          BLOB NOT NULL,          -- the framed message the step resumes from
    stop_at_ms       INTEGER,                   -- set by intake from the calendar
    state            TEXT NOT NULL DEFAULT 'waiting'
                     CHECK (state IN ('waiting', 'answered', 'stopped', 'withdrawn', 'superseded')),
    answer_event_id  TEXT,                   -- the dossier.supplemented that answered
    answered_at_ms   INTEGER,                   -- its supplemented_at: the clock resumes here
    announced        INTEGER NOT NULL DEFAULT 0     -- a stop's status event went out
);
CREATE UNIQUE INDEX supplement_waits_one_waiting ON supplement_waits (dossier_id) WHERE state = 'waiting';
CREATE INDEX supplement_waits_dossier ON supplement_waits (dossier_id);
CREATE INDEX supplement_waits_stop ON supplement_waits (state, stop_at_ms);

-- How a dossier ended, once: the first of a decision, a withdrawal or a stop wins, so a
-- withdrawal racing a decision has one answer. Stages check it before passing a
-- dossier on.
CREATE TABLE dossier_closures (
    dossier_id   TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('decided', 'withdrawn', 'stopped')),
    event_id     TEXT NOT NULL,              -- the event that ended it
    closed_at_ms INTEGER NOT NULL
);

-- Which calendar data computed the due time, and the pauses it was moved by (JSON list
-- of {step, from_at, to_at, paused_working_ms}), so a redelivery re-emits it exactly.
ALTER TABLE routing_assignments ADD COLUMN calendar_version TEXT;
ALTER TABLE routing_assignments ADD COLUMN clock_pauses TEXT NOT NULL DEFAULT '[]';
