-- Foundation: extensions every module relies on, the transactional outbox
-- and the idempotency-key store.

CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Domain events, written by every module in the same transaction as the
-- change they describe (transactional outbox). Consumers read in `position`
-- order and only up to the oldest transaction still running (`tx_id`), so an
-- event committed late is never skipped.
CREATE TABLE events (
    id              uuid        PRIMARY KEY,
    position        bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    type            text        NOT NULL CHECK (type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_aggregate_idx ON events (aggregate_type, aggregate_id, position);

-- Stripe-style idempotency: the first response to a key is stored with a
-- fingerprint of the request, in the same transaction as the effect.
CREATE TABLE idempotency_keys (
    principal        text        NOT NULL,
    key              text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    method           text        NOT NULL,
    path             text        NOT NULL,
    fingerprint      bytea       NOT NULL,
    response_status  smallint    NOT NULL,
    response_body    jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
