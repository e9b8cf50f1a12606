-- Result documents the e-wallet gateway has not acknowledged yet: the result stage parks
-- the decision here (its input offset may then be committed), its timer delivers again
-- with growing delays, and past the escalation age hands the dossier to an officer while
-- it keeps trying. Same shape as verify_parked (one code path serves both lots).
CREATE TABLE result_parked (
    dossier_id       TEXT PRIMARY KEY,
    payload          BYTEA NOT NULL,          -- the dossier.decided message (Confluent framing)
    parked_at_ms     BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT NOT NULL,           -- the wallet's failure (no personal data)
    decision         BYTEA,
    escalated_at_ms  BIGINT
);
CREATE INDEX result_parked_due ON result_parked (next_attempt_ms);
-- The escalation mark is common to both lots (verify escalates into its own table).
ALTER TABLE verify_parked ADD COLUMN escalated_at_ms BIGINT;

-- Every result document a wallet acknowledged: who delivered it (stage and replica), what
-- (dossier, document reference and digest, idempotency key), when, and the wallet's
-- receipt. No owner: the receipt and the dossier name the delivery.
CREATE TABLE wallet_deliveries (
    idempotency_key  TEXT PRIMARY KEY,
    dossier_id       TEXT NOT NULL,
    dossier_code     TEXT NOT NULL,
    document_ref     TEXT NOT NULL,
    document_sha256  TEXT NOT NULL,
    receipt_id       TEXT NOT NULL,
    delivered_by     TEXT NOT NULL,
    delivered_at_ms  BIGINT NOT NULL,
    duplicate_ack    BOOLEAN NOT NULL         -- the wallet had it already (an acknowledgement was lost)
);
CREATE INDEX wallet_deliveries_code ON wallet_deliveries (dossier_code);
