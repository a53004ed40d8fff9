-- The statuses, journal entry kinds and reconciliation exception kinds added to the
-- output schemas for captures, voids, refunds and chargebacks (docs/schemas.md, "Output
-- enums"). Each CHECK is widened, never narrowed: every row written before still passes.
-- UNKNOWN, the schemas' enum default, is never written and stays refused here.

ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_kind_check CHECK (kind IN (
    'AUTHORIZATION', 'SETTLEMENT',
    'CAPTURE', 'AUTHORIZATION_HOLD', 'VOID', 'REFUND',
    'CHARGEBACK_OPENED', 'CHARGEBACK_WON', 'CHARGEBACK_LOST'));

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN (
    'INITIATED', 'AUTHORIZED', 'DECLINED', 'SETTLED',
    'PARTIALLY_CAPTURED', 'CAPTURED', 'VOIDED', 'PARTIALLY_REFUNDED', 'REFUNDED',
    'DISPUTED', 'CHARGEBACK_WON', 'CHARGEBACK_LOST'));

ALTER TABLE reconciliation_exceptions DROP CONSTRAINT reconciliation_exceptions_kind_check;
ALTER TABLE reconciliation_exceptions ADD CONSTRAINT reconciliation_exceptions_kind_check CHECK (kind IN (
    'AMOUNT_MISMATCH', 'CURRENCY_MISMATCH', 'MISSING_IN_LEDGER', 'MISSING_IN_PSP', 'ORPHAN_EVENT',
    'STUCK_PAYMENT', 'CAPTURE_EXCEEDS_AUTHORIZATION', 'REFUND_EXCEEDS_CAPTURED',
    'CHARGEBACK_EXCEEDS_CAPTURED', 'ILLEGAL_MONEY_MOVEMENT'));
