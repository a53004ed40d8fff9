-- Reconciliation exceptions (PRODUCT.md, Reconciliation), from the
-- reconciliation_exceptions topic. Ids are deterministic (UUID v5 of payment id and kind),
-- so each exception is stored once per payment and kind, replays included.
CREATE TABLE reconciliation_exceptions (
    id                     uuid        PRIMARY KEY,
    kind                   text        NOT NULL CHECK (kind IN ('AMOUNT_MISMATCH', 'CURRENCY_MISMATCH',
                                           'MISSING_IN_LEDGER', 'MISSING_IN_PSP', 'ORPHAN_EVENT')),
    payment_id             text        NOT NULL,
    expected_amount_minor  bigint,
    actual_amount_minor    bigint,
    currency               char(3),
    detected_at            timestamptz NOT NULL,
    source_topic           text        NOT NULL,
    source_partition       integer     NOT NULL,
    source_offset          bigint      NOT NULL,
    written_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payment_id, kind)
);
CREATE INDEX reconciliation_exceptions_kind ON reconciliation_exceptions (kind, detected_at);

-- Per-account posting sequence numbers: each account's postings are numbered 1, 2, 3, …
-- in the order the ledger wrote them, with no gaps. `accounts` holds the last number
-- handed out; taking numbers locks the account's row, so concurrent writers serialise.
CREATE TABLE accounts (
    account         text    PRIMARY KEY,
    last_sequence   bigint  NOT NULL CHECK (last_sequence >= 0)
);

ALTER TABLE postings ADD COLUMN account_sequence bigint;
UPDATE postings p SET account_sequence = numbered.n
FROM (
    SELECT journal_entry_id, line,
           row_number() OVER (PARTITION BY account ORDER BY e.written_at, p2.journal_entry_id, p2.line) AS n
    FROM postings p2 JOIN journal_entries e ON e.id = p2.journal_entry_id
) AS numbered
WHERE p.journal_entry_id = numbered.journal_entry_id AND p.line = numbered.line;
INSERT INTO accounts (account, last_sequence)
    SELECT account, max(account_sequence) FROM postings GROUP BY account;
ALTER TABLE postings ALTER COLUMN account_sequence SET NOT NULL;
ALTER TABLE postings ADD CONSTRAINT postings_account_sequence UNIQUE (account, account_sequence);
