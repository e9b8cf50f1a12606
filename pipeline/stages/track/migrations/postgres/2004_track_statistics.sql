-- Statistics by definition (docs/statistics.md): the facts each figure is counted by,
-- kept per dossier so the status API's /stats and /stats/report are one query over the
-- projection and equal the motcua-stats fold over the event log.
ALTER TABLE track_dossiers ADD COLUMN field TEXT;
ALTER TABLE track_dossiers ADD COLUMN rejected_at BIGINT;
ALTER TABLE track_dossiers ADD COLUMN withdrawn_at BIGINT;
ALTER TABLE track_dossiers ADD COLUMN stopped_at BIGINT;
ALTER TABLE track_dossiers ADD COLUMN reappointed_at BIGINT;
