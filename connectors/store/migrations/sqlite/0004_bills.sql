CREATE TABLE bills (
    bill_reference   TEXT PRIMARY KEY,
    dossier_id       TEXT NOT NULL UNIQUE,
    amount_vnd       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'expired')),
    issued_at_ms     INTEGER NOT NULL,
    expires_at_ms    INTEGER NOT NULL,
    paid_at_ms       INTEGER,
    gateway_tx       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    verified_payload BLOB NOT NULL
);
CREATE INDEX bills_pending_expiry ON bills (status, expires_at_ms);
