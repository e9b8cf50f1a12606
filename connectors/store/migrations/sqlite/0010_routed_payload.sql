-- The routed message a dossier was first sent to the back office with (framed, as on
-- the topic), kept while the dossier is open: a back-office request for papers records
-- it with the wait, and the supplement sends the dossier back to the back office from
-- it. Cleared when the dossier closes (it holds personal data). NULL for rows routed
-- before it was kept.
ALTER TABLE routing_assignments ADD COLUMN routed_payload BLOB;
