-- The SHA-256 of the citizen's lookup token (from the "received" status): the status
-- service answers a citizen who presents the dossier code and this token. Never the
-- token itself, so a copy of the projection does not let anyone look dossiers up.
ALTER TABLE track_dossiers ADD COLUMN lookup_digest TEXT;
