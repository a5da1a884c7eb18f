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
--    benchmark). The plans are the same either way (nested loops on primary
--    keys); plan them once per session.
ALTER FUNCTION ledger_transfer(uuid, text, text, char(3), uuid[], bigint[], uuid, uuid, uuid, text, text)
    SET plan_cache_mode = force_generic_plan;
