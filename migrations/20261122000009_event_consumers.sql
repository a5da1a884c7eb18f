-- Event consumers (ADR 0011). The outbox (`events`) is read in
-- (tx_id, position) order and only below the oldest running transaction,
-- so an event that commits late is never skipped.
CREATE INDEX events_stream_idx ON events (tx_id, position);

-- Where each named reader of the outbox is: an in-process consumer, or the
-- NATS relay. The row is locked while a batch is handled, so one process at
-- a time moves a cursor.
CREATE TABLE event_cursors (
    name        text        PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT '0'::xid8,
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The processed-event keys: a consumer's effect and its key commit together,
-- so a redelivered event is recognised and has no second effect.
CREATE TABLE processed_events (
    consumer      text        NOT NULL,
    event_id      uuid        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- Events a consumer failed on, waiting for their next attempt.
CREATE TABLE event_retries (
    consumer         text        NOT NULL,
    event_id         uuid        NOT NULL,
    attempts         integer     NOT NULL CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    last_error       text        NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX event_retries_due_idx ON event_retries (next_attempt_at);

-- Events a consumer gave up on, for an operator to inspect and replay.
CREATE TABLE dead_letters (
    id           uuid        PRIMARY KEY,
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    payload      jsonb       NOT NULL,
    error        text        NOT NULL,
    attempts     integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz
);
-- At most one open dead letter per consumer and event.
CREATE UNIQUE INDEX dead_letters_open_idx ON dead_letters (consumer, event_id) WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_created_idx ON dead_letters (created_at DESC, id DESC);
