-- The legal clock (issue 15): the working time the clock was paused for supplements
-- (from the latest routing's pauses) and the calendar data that computed the due time
-- (a content hash), so an operator sees why a due time moved and can recompute it.
ALTER TABLE track_dossiers ADD COLUMN paused_working_ms BIGINT;
ALTER TABLE track_dossiers ADD COLUMN calendar_version TEXT;
-- A new appointment's date (the authority apologised and promised a new date): the
-- dossier is tracked against it, its legal due time stays for the statistics.
ALTER TABLE track_dossiers ADD COLUMN appointment_due_at BIGINT;
