-- What a stage decided for an input, recorded the first time it decided (issue 33): a
-- redelivery, a re-sent input or a retry announces exactly these events again, whatever
-- the clock or a registry says by then. The stage derives its effects (waits,
-- escalations) from the recorded decision, never from a fresh one.
CREATE TABLE stage_decisions (
    stage          TEXT NOT NULL,
    input_id       TEXT NOT NULL,            -- the event the decision answers
    dossier_id     TEXT NOT NULL,
    decision       BYTEA NOT NULL,            -- the framed events it announces
    decided_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (stage, input_id)
);
