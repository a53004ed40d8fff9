-- paystream ledger (PRODUCT.md, Ledger). Amounts are integer minor units of an ISO 4217
-- currency. Journal entry ids are deterministic (UUID v5 of payment id and kind), so a
-- replayed entry conflicts with the stored one and is skipped: nothing posts twice.

CREATE TABLE journal_entries (
    id                  uuid        PRIMARY KEY,
    payment_id          text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('AUTHORIZATION', 'SETTLEMENT')),
    occurred_at         timestamptz NOT NULL,
    caused_by_event_id  text        NOT NULL,
    source_topic        text        NOT NULL,
    source_partition    integer     NOT NULL,
    source_offset       bigint      NOT NULL,
    written_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_payment_id ON journal_entries (payment_id);

CREATE TABLE postings (
    journal_entry_id    uuid        NOT NULL REFERENCES journal_entries (id),
    line                smallint    NOT NULL,
    account             text        NOT NULL,
    side                text        NOT NULL CHECK (side IN ('DEBIT', 'CREDIT')),
    amount_minor        bigint      NOT NULL CHECK (amount_minor > 0),
    currency            char(3)     NOT NULL,
    PRIMARY KEY (journal_entry_id, line)
);
CREATE INDEX postings_account ON postings (account, currency);

-- Debit-normal running totals per account and currency:
-- balance_minor = debit_total_minor - credit_total_minor.
CREATE TABLE account_balances (
    account             text        NOT NULL,
    currency            char(3)     NOT NULL,
    debit_total_minor   bigint      NOT NULL,
    credit_total_minor  bigint      NOT NULL,
    balance_minor       bigint      NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, currency),
    CHECK (balance_minor = debit_total_minor - credit_total_minor)
);

-- Latest status of each payment, from the payment_status topic.
CREATE TABLE payments (
    payment_id          text        PRIMARY KEY,
    merchant_id         text        NOT NULL,
    status              text        NOT NULL CHECK (status IN ('INITIATED', 'AUTHORIZED', 'DECLINED', 'SETTLED')),
    amount_minor        bigint      NOT NULL,
    currency            char(3)     NOT NULL,
    last_event_id       text        NOT NULL,
    updated_at          timestamptz NOT NULL
);

-- The next offset to read per topic partition, written in the same transaction as the
-- rows it produced: the sink resumes from here, exactly once.
CREATE TABLE sink_offsets (
    topic               text        NOT NULL,
    partition           integer     NOT NULL,
    next_offset         bigint      NOT NULL,
    PRIMARY KEY (topic, partition)
);
