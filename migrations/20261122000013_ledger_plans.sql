-- Two planner traps on the ledger's hot path (docs/benchmarks.md, issue 5;
-- ADR 0010). Neither changes a rule: the same rows are written, under the
-- same constraints and triggers.

-- 1. No query reads this index (holds are found by booking or intent), but
--    the planner chose it for every posting and voiding
--    (`WHERE id = … AND status = 'pending'`): with few live pending
--    transfers it looks like a one-row index, yet an index scan walks all of
--    its entries, the dead ones of every transfer posted since the last
--    vacuum included, and filters them by id. That made each capture
--    O(recently resolved transfers) instead of one primary-key probe.
--    Without it, a posting also no longer changes an indexed column, so it
--    can be a HOT update.
DROP INDEX ledger_transfers_pending;

-- 2. `ledger_transfer` is called with 2–4 legs; its statements take arrays,
--    and a generic plan assumes 10 elements, so the plan cache judged the
--    generic plan dearer than a custom one and re-planned both INSERTs on
--    every call (a sixth of the database's CPU under the settlement
--    benchmark). Its statements are now planned once per session
--    (`plan_cache_mode`), and written so that their plan cannot depend on
--    how many legs the planner guesses: each leg's account is looked up by
--    primary key in a correlated subquery, where the join this replaces
--    became a hash join over a scan of every account once a generic plan
--    assumed 10 legs. The accounts are read once, for both INSERTs.
CREATE OR REPLACE FUNCTION ledger_transfer(
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
) RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    -- Each leg's account's `tracked`; an unknown account reads as false and
    -- then fails the foreign key.
    v_tracked boolean[] := ARRAY(
        SELECT coalesce((SELECT a.tracked FROM ledger_accounts a WHERE a.id = u.acc), false)
          FROM unnest(p_accounts) WITH ORDINALITY AS u(acc, n)
         ORDER BY u.n);
BEGIN
    INSERT INTO ledger_transfers (id, kind, status, currency, amount, booking_id, user_id,
                                  intent_id, provider_ref, description, has_tracked)
    SELECT p_id, p_kind, p_status, p_currency, sum(a) FILTER (WHERE a > 0), p_booking_id,
           p_user_id, p_intent_id, p_provider_ref, coalesce(p_description, ''),
           true = ANY (v_tracked)
      FROM unnest(p_amounts) a;
    INSERT INTO ledger_entries (transfer_id, account_id, currency, amount, tracked)
    SELECT p_id, u.acc, p_currency, u.amt, u.tracked
      FROM unnest(p_accounts, p_amounts, v_tracked) AS u(acc, amt, tracked)
     WHERE u.amt <> 0;
END;
$$;
