-- Bills the payment stage expired (issue 33). Recorded in the transaction that expires
-- the bill, so a payment settled first is never announced as stopped; announced from
-- here, so a crash before the announcement went out announces it again, identically.
-- A bill a withdrawal cancelled is expired without a row here: the withdrawal ended the
-- dossier and said so.
CREATE TABLE bill_expiries (
    bill_reference TEXT PRIMARY KEY,
    dossier_id     TEXT NOT NULL,
    expired_at_ms  BIGINT NOT NULL,
    announced      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX bill_expiries_unannounced ON bill_expiries (announced, expired_at_ms);
