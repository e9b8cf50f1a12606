-- Official dossier codes (Circular 01/2018/TT-VPCP, Art. 19): <agency>-<YYMMDD>-<NNNN>,
-- a per-agency daily sequence. Keyed by dossier id so a redelivered submission gets the
-- code it was given the first time.
CREATE TABLE agency_day_sequences (
    agency_code TEXT NOT NULL,
    day         TEXT NOT NULL,          -- YYMMDD in Asia/Ho_Chi_Minh
    last_seq    BIGINT NOT NULL,
    PRIMARY KEY (agency_code, day)
);

CREATE TABLE dossier_codes (
    dossier_id     TEXT PRIMARY KEY,
    dossier_code   TEXT NOT NULL UNIQUE,
    agency_code    TEXT NOT NULL,
    day            TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    allocated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (agency_code, day, seq)
);
