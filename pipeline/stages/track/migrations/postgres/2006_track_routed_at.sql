-- The latest routing's time (issue 33): the pauses a routing gave back (paused working
-- time, their periods, the calendar) follow the latest routing, not the latest
-- assignment — a decision is an assignment too, and may reach the projection before the
-- routing that resumed the dossier after a wait. Filled by the next routing of a row.
ALTER TABLE track_dossiers ADD COLUMN routed_at BIGINT;
