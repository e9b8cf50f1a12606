-- The lookup token the citizen was given with the code (intake draws it; a redelivered
-- submission gets the stored one back, so its "received" status is identical).
-- NULL for codes allocated before this column existed.
ALTER TABLE dossier_codes ADD COLUMN lookup_token TEXT;
