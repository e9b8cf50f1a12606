-- Dossiers whose verification waits for a registry that is slow or down. The Kafka
-- offset of the input is committed once the dossier is parked here; a retrier picks due
-- rows up, and either emits the verification outcome or, past the escalation age, hands
-- the dossier to an officer.
CREATE TABLE verify_parked (
    dossier_id       TEXT PRIMARY KEY,
    payload          BYTEA NOT NULL,          -- the dossier.accepted message (Confluent framing)
    parked_at_ms     BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL
);
CREATE INDEX verify_parked_due ON verify_parked (next_attempt_ms);
