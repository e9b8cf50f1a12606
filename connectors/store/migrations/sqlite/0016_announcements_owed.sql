-- Statuses a stage decided that do not end their dossier, from the moment the stage is
-- about to produce them until the broker acknowledged them (issue 33). A stage that ends
-- a dossier waits while another still owes one of its statuses, so nothing the other
-- decided before the end reaches dossier.status after it. Rows are short-lived; one left
-- by a worker killed before its acknowledgement holds an end back only for a bounded
-- time (motcua_store::OWED_HOLD_MS), and goes when the status is announced again.
CREATE TABLE announcements_owed (
    event_id      TEXT PRIMARY KEY,
    dossier_id    TEXT NOT NULL,
    stage         TEXT NOT NULL,
    owed_since_ms BIGINT NOT NULL
);
CREATE INDEX announcements_owed_dossier ON announcements_owed (dossier_id);
