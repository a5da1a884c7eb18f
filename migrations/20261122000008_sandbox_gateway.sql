-- The sandbox payment gateway's own books (crates/payments/src/sandbox.rs).
--
-- The sandbox plays an external card processor, so nothing of Rentify's
-- refers to these tables and they live in their own schema. They share
-- Rentify's database only for convenience: every Rentify process sees the
-- same processor state, and that state survives restarts, as a real
-- processor's would.
--
-- Concurrency: every call that changes an intent locks its row
-- (`SELECT … FOR UPDATE`) and checks its status under the lock, so 20
-- concurrent captures of one intent capture once; the partial unique index
-- on captures enforces that even if the code were wrong.

CREATE SCHEMA sandbox_gateway;

-- Stored card methods (`pm_…`), made from client-side tokens (`tok_visa`, …).
CREATE TABLE sandbox_gateway.methods (
    id         text        PRIMARY KEY CHECK (id LIKE 'pm\_%'),
    token      text        NOT NULL,
    brand      text        NOT NULL,
    last4      text        NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month  smallint    NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year   smallint    NOT NULL,
    -- What an authorization on this method does.
    behaviour  text        NOT NULL CHECK (behaviour IN ('succeed', 'decline', 'insufficient_funds')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Bank accounts payouts go to (`ba_…`), made from `btok_…` tokens.
CREATE TABLE sandbox_gateway.destinations (
    id         text        PRIMARY KEY CHECK (id LIKE 'ba\_%'),
    token      text        NOT NULL,
    bank_name  text        NOT NULL,
    last4      text        NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    -- `fail`: every payout to it fails later with `account_closed`.
    behaviour  text        NOT NULL CHECK (behaviour IN ('succeed', 'fail')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Payment intents (`pi_…`), one per Rentify intent: `rentify_intent_id`
-- is the authorization's idempotency key.
CREATE TABLE sandbox_gateway.intents (
    id                text        PRIMARY KEY CHECK (id LIKE 'pi\_%'),
    rentify_intent_id uuid        NOT NULL UNIQUE,
    method_id         text        NOT NULL REFERENCES sandbox_gateway.methods (id),
    amount            bigint      NOT NULL CHECK (amount > 0),
    currency          text        NOT NULL,
    description       text        NOT NULL DEFAULT '',
    status            text        NOT NULL CHECK (status IN ('authorized', 'captured', 'voided', 'failed')),
    amount_captured   bigint      NOT NULL DEFAULT 0,
    amount_refunded   bigint      NOT NULL DEFAULT 0,
    failure_code      text,
    failure_message   text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (amount_captured BETWEEN 0 AND amount),
    CHECK (amount_refunded BETWEEN 0 AND amount_captured),
    CHECK ((status = 'captured') = (amount_captured > 0)),
    CHECK ((status = 'failed') = (failure_code IS NOT NULL))
);

-- Money movements: what `records(day)` reports for reconciliation.
CREATE TABLE sandbox_gateway.operations (
    id             text        PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind IN ('capture', 'refund', 'payout')),
    intent_id      text        REFERENCES sandbox_gateway.intents (id),
    destination_id text        REFERENCES sandbox_gateway.destinations (id),
    -- The idempotency key Rentify gave the call (a payout's: Rentify's
    -- payout id).
    reference      text        NOT NULL,
    amount         bigint      NOT NULL CHECK (amount > 0),
    currency       text        NOT NULL,
    -- Payouts settle later (`payout.paid` / `payout.failed`); captures and
    -- refunds are done at once.
    status         text        NOT NULL DEFAULT 'succeeded'
                               CHECK (status IN ('succeeded', 'pending', 'paid', 'failed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'payout') = (destination_id IS NOT NULL)),
    CHECK ((kind = 'payout') = (intent_id IS NULL)),
    CHECK ((kind = 'payout') = (status <> 'succeeded'))
);
CREATE UNIQUE INDEX sandbox_operations_one_capture_idx
    ON sandbox_gateway.operations (intent_id) WHERE kind = 'capture';
CREATE INDEX sandbox_operations_created_idx ON sandbox_gateway.operations (created_at);
CREATE INDEX sandbox_operations_pending_payouts_idx
    ON sandbox_gateway.operations (created_at) WHERE status = 'pending';

-- The first answer to an idempotency key, with what was asked, so a retry
-- gets the same answer and a reuse with other parameters is refused.
CREATE TABLE sandbox_gateway.idempotency (
    key        text        PRIMARY KEY,
    request    jsonb       NOT NULL,
    response   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
