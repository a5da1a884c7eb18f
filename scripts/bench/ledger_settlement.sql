-- One completed booking's settlement for pgbench: the SQL rentify-loadgen
-- ledger sends through rentify_payments::ledger (crates/loadgen/src/ledger.rs),
-- in the same two statements, on the accounts of ledger_setup.sql.
-- pgbench counts one "transaction" per run of this script, i.e. per booking
-- (three transfers, all crediting platform_revenue).
--
-- scripts/bench.sh passes -D owners=N and the house accounts as -D revenue=…,
-- escrow=…, clearing=…, payouts=…. Differences from the Rust driver: the
-- ids come from bench_uuidv7() on the server (Rust: Uuid::now_v7() in the
-- client), the owner's wallet, owner and renter ids are built from n in SQL
-- (Rust: bound as uuids), and the booking id is read back with \gset from the
-- authorization's own statement.
\set n random(1, :owners)
\set subtotal random(2000, 50000)
\set service_fee :subtotal / 10
\set total :subtotal + :service_fee
\set commission :subtotal * 15 / 100
\set earnings :subtotal - :commission
\set payout_fee 25
\set payout_net :earnings - :payout_fee
\set neg_total 0 - :total
\set neg_subtotal 0 - :subtotal
\set neg_earnings 0 - :earnings

-- 1. authorize: a pending charge, clearing → escrow + platform revenue (the
--    service fee). One autocommitted statement.
SELECT ids.charge, ids.booking
  FROM (SELECT bench_uuidv7() AS charge, bench_uuidv7() AS booking) ids,
LATERAL ledger_transfer(ids.charge, 'charge', 'pending', 'EUR',
    ARRAY[:clearing, :escrow, :revenue]::uuid[],
    ARRAY[:neg_total, :subtotal, :service_fee]::bigint[],
    ids.booking, ('00000000-0000-4000-c000-' || lpad(:n::text, 12, '0'))::uuid,
    NULL, NULL, 'authorization hold') \gset

-- 2. settle: capture, settlement, payout, committed together in one
--    statement (rentify_payments::ledger::batch).
WITH posted AS (UPDATE ledger_transfers SET status = 'posted'
                 WHERE id = ANY (ARRAY[:charge]::uuid[]) AND status = 'pending' RETURNING id)
SELECT ledger_batch_posted((SELECT count(*) FROM posted), 1),
  ledger_transfer(bench_uuidv7(), 'settlement', 'posted', 'EUR',
    ARRAY[:escrow, ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid, :revenue]::uuid[],
    ARRAY[:neg_subtotal, :earnings, :commission]::bigint[],
    :booking, ('00000000-0000-4000-9000-' || lpad(:n::text, 12, '0'))::uuid,
    NULL, NULL, 'escrow settled to the owner and the platform'),
  ledger_transfer(bench_uuidv7(), 'payout', 'posted', 'EUR',
    ARRAY[('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid, :payouts, :revenue]::uuid[],
    ARRAY[:neg_earnings, :payout_net, :payout_fee]::bigint[],
    NULL, ('00000000-0000-4000-9000-' || lpad(:n::text, 12, '0'))::uuid,
    NULL, NULL, 'payout of earnings');
