-- Deadline and step warnings as first computed (issue 33): a crash between producing a
-- warning and marking its dossier warned re-announces this very event (its time, status
-- and hours left then), not one computed again with other content under the same id.
CREATE TABLE track_warnings (
    event_id TEXT PRIMARY KEY,
    event    TEXT NOT NULL              -- the status event, as JSON
);
