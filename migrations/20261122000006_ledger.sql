-- The ledger: the only way money moves (docs/adr/0010-ledger.md).
--
-- Double entry. A transfer groups entries; an entry moves `amount` minor
-- units into (positive) or out of (negative) one account. Every transfer
-- sums to zero, so the whole ledger sums to zero per currency. The money
-- that enters from and leaves to the outside world (cards, banks) passes
-- through `gateway_clearing`, which is why that account runs negative.
--
-- What the database enforces, whatever the code does:
--   * a transfer balances (deferred constraint trigger, checked at commit);
--   * entries are append-only (UPDATE, DELETE and TRUNCATE are refused) and
--     may only be written in the transaction that created their transfer;
--   * a transfer's only change is its status, once: pending → posted|voided;
--   * an entry's account and transfer share its currency (composite FKs);
--   * a tracked account (a wallet) never goes below zero, counting the
--     funds its pending transfers reserve (a CHECK on the running balance,
--     which the row lock of the balance UPDATE serializes).
--
-- Two-phase transfers: a `pending` transfer's entries reserve what they take
-- out of tracked accounts (`pending_debits`) and credit nothing until the
-- transfer is `posted`; `voided` releases the reservation. Authorization
-- holds and withdrawal holds are pending transfers.
--
-- Hot accounts: house accounts (platform revenue, escrow, clearing) are not
-- tracked: no running balance, so posting to them writes no shared row and
-- settlements do not serialize on them. Their balance is the sum of their
-- posted entries (`ledger_balances`), which reconciliation checks.

CREATE TABLE ledger_accounts (
    id             uuid PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN (
        'wallet', 'platform_revenue', 'escrow', 'deposits_held',
        'gateway_clearing', 'payouts_pending')),
    -- The user a wallet belongs to; NULL for house accounts.
    owner_id       uuid,
    currency       char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    tracked        boolean NOT NULL,
    posted         bigint NOT NULL DEFAULT 0,
    pending_debits bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_one_per_kind UNIQUE NULLS NOT DISTINCT (kind, owner_id, currency),
    CONSTRAINT ledger_accounts_id_currency_tracked UNIQUE (id, currency, tracked),
    CONSTRAINT ledger_wallet_owned CHECK ((kind = 'wallet') = (owner_id IS NOT NULL)),
    CONSTRAINT ledger_no_overdraft CHECK (NOT tracked OR posted - pending_debits >= 0),
    CONSTRAINT ledger_untracked_no_balance CHECK (tracked OR (posted = 0 AND pending_debits = 0))
);

CREATE TABLE ledger_transfers (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN (
        'charge', 'refund', 'deposit_hold', 'deposit_release', 'deposit_capture',
        'settlement', 'payout', 'payout_return', 'wallet_deposit', 'withdrawal',
        'dispute_hold', 'dispute_clawback', 'adjustment')),
    status       text NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    currency     char(3) NOT NULL,
    -- The gross amount moved (the sum of the positive entries).
    amount       bigint NOT NULL CHECK (amount > 0),
    booking_id   uuid,
    user_id      uuid,
    intent_id    uuid,
    -- The gateway's id of the operation (charge, refund, payout), if any.
    provider_ref text,
    description  text NOT NULL DEFAULT '',
    -- Whether an entry is on a tracked account (a wallet). Only such
    -- transfers need their running balances moved when they are posted or
    -- voided; the entries trigger refuses a tracked entry on a transfer that
    -- does not say so, so the flag cannot be used to skip a balance.
    has_tracked  boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    CONSTRAINT ledger_transfers_id_currency UNIQUE (id, currency)
);
CREATE INDEX ledger_transfers_booking ON ledger_transfers (booking_id, created_at) WHERE booking_id IS NOT NULL;
CREATE INDEX ledger_transfers_user ON ledger_transfers (user_id, created_at) WHERE user_id IS NOT NULL;
CREATE INDEX ledger_transfers_created ON ledger_transfers (created_at);
CREATE INDEX ledger_transfers_pending ON ledger_transfers (created_at) WHERE status = 'pending';

CREATE TABLE ledger_entries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id uuid NOT NULL,
    account_id  uuid NOT NULL,
    currency    char(3) NOT NULL,
    amount      bigint NOT NULL CHECK (amount <> 0),
    -- The account's `tracked`, checked by the foreign key: lets the
    -- triggers skip house accounts without looking them up.
    tracked     boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (transfer_id, currency) REFERENCES ledger_transfers (id, currency),
    FOREIGN KEY (account_id, currency, tracked) REFERENCES ledger_accounts (id, currency, tracked)
);
CREATE INDEX ledger_entries_transfer ON ledger_entries (transfer_id);
-- A wallet's history, by account. House accounts' entries are left out on
-- purpose: every settlement appends to platform revenue, and an index on
-- (account, id) would make all of them insert into its one rightmost page.
-- Their balances are sums that reconciliation scans for.
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, id) WHERE tracked;

-- Entries: append-only, written with their transfer, balances kept.
CREATE FUNCTION ledger_entry_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_status  text;
    v_created timestamptz;
    v_tracked boolean;
BEGIN
    SELECT status, created_at, has_tracked INTO v_status, v_created, v_tracked
      FROM ledger_transfers WHERE id = NEW.transfer_id;
    -- `now()` is the transaction's start: equal only for a transfer created
    -- in this very transaction.
    IF v_created IS DISTINCT FROM now() THEN
        RAISE EXCEPTION 'ledger entries may only be added in the transaction that creates their transfer'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_with_transfer';
    END IF;
    IF v_status = 'voided' THEN
        RAISE EXCEPTION 'a voided transfer takes no entries'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_with_transfer';
    END IF;
    IF NEW.tracked THEN
        IF NOT v_tracked THEN
            RAISE EXCEPTION 'an entry on a tracked account needs a transfer with has_tracked'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_with_transfer';
        END IF;
        IF v_status = 'posted' THEN
            UPDATE ledger_accounts SET posted = posted + NEW.amount WHERE id = NEW.account_id;
        ELSIF NEW.amount < 0 THEN
            UPDATE ledger_accounts SET pending_debits = pending_debits - NEW.amount WHERE id = NEW.account_id;
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_entries_insert AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_insert();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_append_only';
END;
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transfers_no_delete BEFORE DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Every transfer balances, checked at commit (after all its entries).
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_sum bigint;
    v_credits bigint;
    v_amount bigint;
BEGIN
    SELECT coalesce(sum(amount), 0), coalesce(sum(amount) FILTER (WHERE amount > 0), 0)
      INTO v_sum, v_credits FROM ledger_entries WHERE transfer_id = NEW.id;
    SELECT amount INTO v_amount FROM ledger_transfers WHERE id = NEW.id;
    IF v_sum <> 0 OR v_credits <> v_amount THEN
        RAISE EXCEPTION 'ledger transfer % does not balance (sum %, credits %, amount %)',
            NEW.id, v_sum, v_credits, v_amount
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transfer_balanced';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_transfer_balanced AFTER INSERT ON ledger_transfers
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- A transfer changes once, in status only: pending → posted | voided.
CREATE FUNCTION ledger_transfer_resolve() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'pending' OR NEW.status NOT IN ('posted', 'voided')
       OR (NEW.id, NEW.kind, NEW.currency, NEW.amount, NEW.created_at)
          IS DISTINCT FROM (OLD.id, OLD.kind, OLD.currency, OLD.amount, OLD.created_at)
       OR NEW.booking_id IS DISTINCT FROM OLD.booking_id
       OR NEW.has_tracked IS DISTINCT FROM OLD.has_tracked
       OR NEW.user_id IS DISTINCT FROM OLD.user_id THEN
        RAISE EXCEPTION 'ledger transfer %: only pending → posted|voided is allowed (was %, asked %)',
            OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_append_only';
    END IF;
    NEW.resolved_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_transfers_resolve BEFORE UPDATE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_resolve();

-- The `a.id = ANY (ARRAY(...))` condition looks the transfer's accounts up
-- by primary key: joined on `a.id = e.account_id` alone, the cached plan
-- hashed the few entries and scanned every account (all the wallets) per
-- posting, O(accounts) per capture (see docs/benchmarks.md, issue 5).
CREATE FUNCTION ledger_transfer_resolved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'posted' THEN
        UPDATE ledger_accounts a
           SET posted = a.posted + e.total,
               pending_debits = a.pending_debits + e.debits
          FROM (SELECT account_id, sum(amount) AS total,
                       coalesce(sum(amount) FILTER (WHERE amount < 0), 0) AS debits
                  FROM ledger_entries WHERE transfer_id = NEW.id AND tracked GROUP BY account_id) e
         WHERE a.id = ANY (ARRAY(SELECT account_id FROM ledger_entries
                                  WHERE transfer_id = NEW.id AND tracked))
           AND a.id = e.account_id;
    ELSE
        UPDATE ledger_accounts a
           SET pending_debits = a.pending_debits + e.amount
          FROM (SELECT account_id, sum(amount) AS amount FROM ledger_entries
                 WHERE transfer_id = NEW.id AND tracked AND amount < 0 GROUP BY account_id) e
         WHERE a.id = ANY (ARRAY(SELECT account_id FROM ledger_entries
                                  WHERE transfer_id = NEW.id AND tracked AND amount < 0))
           AND a.id = e.account_id;
    END IF;
    RETURN NULL;
END;
$$;
-- Transfers between house accounts only (most of them) move no running
-- balance: the trigger does not even fire for them.
CREATE TRIGGER ledger_transfers_resolved AFTER UPDATE ON ledger_transfers
    FOR EACH ROW WHEN (NEW.has_tracked) EXECUTE FUNCTION ledger_transfer_resolved();

-- Posts (or holds, with p_status 'pending') a transfer in one call:
-- `p_accounts[i]` receives `p_amounts[i]` (negative: gives). Used by the
-- Rust ledger and by the pgbench comparison, so both run the same SQL.
CREATE FUNCTION ledger_transfer(
    p_id          uuid,
    p_kind        text,
    p_status      text,
    p_currency    char(3),
    p_accounts    uuid[],
    p_amounts     bigint[],
    p_booking_id  uuid,
    p_user_id     uuid,
    p_intent_id   uuid,
    p_provider_ref text,
    p_description text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_transfers (id, kind, status, currency, amount, booking_id, user_id,
                                  intent_id, provider_ref, description, has_tracked)
    SELECT p_id, p_kind, p_status, p_currency, sum(a) FILTER (WHERE a > 0), p_booking_id,
           p_user_id, p_intent_id, p_provider_ref, coalesce(p_description, ''),
           EXISTS (SELECT 1 FROM ledger_accounts WHERE id = ANY (p_accounts) AND tracked)
      FROM unnest(p_amounts) a;
    -- An unknown account keeps `tracked` false and fails the foreign key.
    INSERT INTO ledger_entries (transfer_id, account_id, currency, amount, tracked)
    SELECT p_id, u.acc, p_currency, u.amt, coalesce(a.tracked, false)
      FROM unnest(p_accounts, p_amounts) AS u(acc, amt)
      LEFT JOIN ledger_accounts a ON a.id = u.acc
     WHERE u.amt <> 0;
END;
$$;

-- `ledger::batch`'s guard: every transfer it was asked to post was pending.
CREATE FUNCTION ledger_batch_posted(p_posted bigint, p_wanted integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_posted <> coalesce(p_wanted, 0) THEN
        RAISE EXCEPTION 'ledger batch: % of % transfers to post were pending', p_posted, p_wanted
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_batch_posted';
    END IF;
END;
$$;

-- Balances of every account from its entries (posted transfers only) and
-- what its pending transfers reserve; reconciliation compares these with
-- the running balances of tracked accounts.
CREATE VIEW ledger_balances AS
SELECT a.id AS account_id, a.kind, a.owner_id, a.currency, a.tracked,
       coalesce(sum(e.amount) FILTER (WHERE t.status = 'posted'), 0)::bigint AS posted,
       coalesce(-sum(e.amount) FILTER (WHERE t.status = 'pending' AND e.amount < 0), 0)::bigint AS pending_debits
  FROM ledger_accounts a
  LEFT JOIN ledger_entries e ON e.account_id = a.id
  LEFT JOIN ledger_transfers t ON t.id = e.transfer_id
 GROUP BY a.id;
