-- What the dossier that got a code contained (a digest): a later submission reusing its
-- dossier id with other content is refused instead of silently getting the same code.
-- NULL for codes allocated before this column existed.
ALTER TABLE dossier_codes ADD COLUMN content_digest TEXT;
