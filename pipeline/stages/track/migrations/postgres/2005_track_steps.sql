-- Step budgets (issue 15): the boundaries of the internal process's steps not already kept
-- (submitted_at, received_at, decided_at and completed_at are), the periods the legal clock
-- was paused (supplement waits, from the routing: JSON [[from, to], …] in ms), which a
-- step's working time excludes where they overlap it, and the step a budget warning was
-- last produced for.
ALTER TABLE track_dossiers ADD COLUMN verified_at BIGINT;
ALTER TABLE track_dossiers ADD COLUMN appraised_at BIGINT;
ALTER TABLE track_dossiers ADD COLUMN clock_pauses TEXT;
ALTER TABLE track_dossiers ADD COLUMN step_warned TEXT;
