-- Accounts for the ledger settlement benchmark (scripts/bench.sh
-- `ledger_settlement`, `pgbench_ledger_settlement`), run by psql on a freshly
-- migrated database with `-v owners=N`:
--
--   * the four EUR house accounts (untracked): platform_revenue — the one hot
--     account every transfer of the benchmark credits —, escrow,
--     gateway_clearing and payouts_pending;
--   * N owner wallets in EUR (tracked: running balance, no overdraft).
--
-- Ids are numbered so that pgbench can name them from an integer: owner n's
-- wallet is 00000000-0000-4000-8000-<n, 12 digits>, the owner
-- 00000000-0000-4000-9000-…n and the renter charged for its bookings
-- 00000000-0000-4000-c000-…n (users are not rows here: the ledger has no
-- foreign key to them). rentify-loadgen ledger reads the accounts back and
-- builds the same renter ids.
\set ON_ERROR_STOP 1

INSERT INTO ledger_accounts (id, kind, owner_id, currency, tracked) VALUES
    ('00000000-0000-4000-a000-000000000001', 'platform_revenue', NULL, 'EUR', false),
    ('00000000-0000-4000-a000-000000000002', 'escrow',           NULL, 'EUR', false),
    ('00000000-0000-4000-a000-000000000003', 'gateway_clearing', NULL, 'EUR', false),
    ('00000000-0000-4000-a000-000000000004', 'payouts_pending',  NULL, 'EUR', false);

INSERT INTO ledger_accounts (id, kind, owner_id, currency, tracked)
SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'wallet',
       ('00000000-0000-4000-9000-' || lpad(n::text, 12, '0'))::uuid, 'EUR', true
  FROM generate_series(1, :owners) AS n;

-- UUIDv7 for pgbench's ids (PostgreSQL 15 has no uuidv7()), so its index
-- inserts are time-ordered like the Rust ledger's Uuid::now_v7(): a random
-- v4 with the first 48 bits replaced by the Unix time in ms, version 7.
-- Benchmark database only; the application never calls it.
CREATE FUNCTION bench_uuidv7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
             PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
             FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

ANALYZE ledger_accounts;
