-- What each status event announced besides its status: the procedure, the unit the
-- dossier was with and its due time then. `motcua portal reconcile` rebuilds a portal
-- record from these, so a rebuilt change is the change portal-sync sent (rows projected
-- before this migration have none, and are rebuilt from the dossier's current values).
ALTER TABLE track_history ADD COLUMN procedure_code TEXT;
ALTER TABLE track_history ADD COLUMN unit_code TEXT;
ALTER TABLE track_history ADD COLUMN due_at BIGINT;
