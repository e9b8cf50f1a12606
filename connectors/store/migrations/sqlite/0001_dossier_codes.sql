-- Same tables as migrations/postgres/0001_dossier_codes.sql, in SQLite's dialect.
CREATE TABLE agency_day_sequences (
    agency_code TEXT NOT NULL,
    day         TEXT NOT NULL,
    last_seq    INTEGER NOT NULL,
    PRIMARY KEY (agency_code, day)
);

CREATE TABLE dossier_codes (
    dossier_id     TEXT PRIMARY KEY,
    dossier_code   TEXT NOT NULL UNIQUE,
    agency_code    TEXT NOT NULL,
    day            TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    allocated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (agency_code, day, seq)
);
