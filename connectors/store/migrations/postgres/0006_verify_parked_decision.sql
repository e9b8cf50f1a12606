-- The outcome a retry decided for a parked dossier, stored before it is produced: a crash
-- between producing it and removing the row re-emits exactly these events.
ALTER TABLE verify_parked ADD COLUMN decision BYTEA;
