-- Cheaper checks on the postings insert, the largest part of a ledger batch's time
-- (docs/architecture.md, "Ledger tables and their checks"; figures in
-- docs/notes/sink-write.md):
--
-- 1. The foreign key postings -> journal_entries checked each posting with its own
--    lookup and row lock. It is replaced by one check per insert statement (an anti-join
--    of the statement's new postings against journal_entries) and by making the ledger
--    append-only, so an entry a posting names can never disappear afterwards. A posting
--    that names no entry is refused with the foreign key's SQLSTATE, 23503.
-- 2. The index postings (account, currency) duplicated the leading column of
--    postings_account_sequence (account, account_sequence), which serves every query by
--    account.

ALTER TABLE postings DROP CONSTRAINT postings_journal_entry_id_fkey;

CREATE FUNCTION ledger_postings_name_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    orphan uuid;
BEGIN
    SELECT n.journal_entry_id INTO orphan
    FROM new_postings n
    WHERE NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.id = n.journal_entry_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a posting names journal entry %, which is not in journal_entries', orphan
            USING ERRCODE = 'foreign_key_violation', TABLE = 'postings';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_name_entries
    AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_name_entries();

-- Journal entries and postings are never changed or removed: a correction is a new
-- journal entry. (An operator who must repair rows disables the trigger on purpose.)
CREATE FUNCTION ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (a correction is a new journal entry)',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME;
END
$$;

CREATE TRIGGER journal_entries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER postings_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

DROP INDEX postings_account;
