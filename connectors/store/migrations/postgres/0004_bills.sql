-- Bills of the payment stage: one per dossier, matched to gateway confirmations by
-- reference. Pending bills live here, never in a worker's memory.
CREATE TABLE bills (
    bill_reference   TEXT PRIMARY KEY,
    dossier_id       TEXT NOT NULL UNIQUE,
    amount_vnd       BIGINT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'expired')),
    issued_at_ms     BIGINT NOT NULL,
    expires_at_ms    BIGINT NOT NULL,
    paid_at_ms       BIGINT,
    gateway_tx       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    verified_payload BYTEA NOT NULL      -- the dossier.verified message, to emit dossier.paid from
);
CREATE INDEX bills_pending_expiry ON bills (expires_at_ms) WHERE status = 'pending';
