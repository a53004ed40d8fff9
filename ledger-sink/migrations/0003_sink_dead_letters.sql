-- Records the ledger sink dead-lettered instead of writing (docs/architecture.md, "Dead
-- letters"): records that did not decode, journal entries that do not balance, and
-- records whose rows PostgreSQL refused for a data reason (a NUL byte in text, a key over
-- the btree limit, a value out of range). Each row is written in the same transaction as
-- the rest of its batch and the batch's offsets, so a record is accounted for exactly
-- once: written to the ledger, or listed here. Its dead letter is in `<topic>.dlq`.
CREATE TABLE sink_dead_letters (
    topic             text        NOT NULL,
    partition         integer     NOT NULL,
    "offset"          bigint      NOT NULL,
    -- A DeadLetterReason name, e.g. 'sink_rejected'.
    reason            text        NOT NULL,
    -- PostgreSQL's SQLSTATE, e.g. '22021'; NULL when the sink refused the record itself.
    sqlstate          text,
    -- Why, card numbers and credentials redacted.
    error             text        NOT NULL,
    dead_lettered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX sink_dead_letters_reason ON sink_dead_letters (topic, reason);
