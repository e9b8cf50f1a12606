-- Failed payment attempts, one row per gateway transaction: a redelivered failure
-- confirmation is the same attempt and must not count again.
CREATE TABLE bill_failures (
    bill_reference TEXT NOT NULL,
    gateway_tx     TEXT NOT NULL,
    PRIMARY KEY (bill_reference, gateway_tx)
);
