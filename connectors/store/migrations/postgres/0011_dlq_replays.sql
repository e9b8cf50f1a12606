-- Every replay of a dead letter (`motcua dlq replay`): who, when, what and why. Keyed by
-- the dead letter, so a dead letter is replayed once (a second attempt finds the first);
-- parked rows are dead letters refused because their message was replayed too often.
CREATE TABLE dlq_replays (
    dlq_partition    INTEGER NOT NULL,
    dlq_offset       BIGINT NOT NULL,
    origin_topic     TEXT NOT NULL,
    origin_partition INTEGER NOT NULL,
    origin_offset    BIGINT NOT NULL,
    reason_code      TEXT NOT NULL,        -- why it was dead-lettered
    replay_count     INTEGER NOT NULL,     -- the replay-count header the message goes out with
    outcome          TEXT NOT NULL CHECK (outcome IN ('replayed', 'parked')),
    replayed_by      TEXT NOT NULL,
    why              TEXT NOT NULL,
    replayed_at_ms   BIGINT NOT NULL,
    new_partition    INTEGER,              -- where the replayed message landed
    new_offset       BIGINT,
    PRIMARY KEY (dlq_partition, dlq_offset)
);
