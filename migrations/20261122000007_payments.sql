-- Payments: methods, intents, webhooks, payouts, withdrawals, the line items
-- of a booking's money, settlements and reconciliation reports. The money
-- itself is only ever in the ledger (20261122000006_ledger.sql); these
-- tables say what the gateway did and why the ledger moved.

-- Cards, by token only: the processor's id, brand and last four digits.
CREATE TABLE payment_methods (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_method_id text NOT NULL,
    brand              text NOT NULL,
    last4              char(4) NOT NULL,
    exp_month          smallint NOT NULL,
    exp_year           smallint NOT NULL,
    is_default         boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE INDEX payment_methods_user ON payment_methods (user_id, created_at) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (user_id)
    WHERE is_default AND deleted_at IS NULL;

-- Where a user's payouts go.
CREATE TABLE payout_accounts (
    user_id             uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    provider_account_id text NOT NULL,
    bank_name           text NOT NULL,
    last4               char(4) NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One authorization (and its capture, void and refunds) at the gateway.
--   authorizing: asked, no answer yet (in flight, or the answer was lost)
--   authorized | captured | voided | failed: what the gateway said
--   expired: we stopped waiting (the booking's payment timer); a late
--            success is then recovered or voided
--   voiding: we are releasing it at the gateway (claimed under the row
--            lock first, so a late success cannot revive the booking)
CREATE TABLE payment_intents (
    id                 uuid PRIMARY KEY,
    purpose            text NOT NULL CHECK (purpose IN ('booking', 'wallet_deposit')),
    booking_id         uuid REFERENCES bookings (id),
    user_id            uuid NOT NULL,
    payment_method_id  uuid REFERENCES payment_methods (id),
    provider_intent_id text UNIQUE,
    currency           char(3) NOT NULL,
    amount             bigint NOT NULL CHECK (amount > 0),
    -- The part of `amount` that is a refundable deposit.
    deposit            bigint NOT NULL DEFAULT 0 CHECK (deposit >= 0 AND deposit <= amount),
    status             text NOT NULL CHECK (status IN (
        'authorizing', 'authorized', 'captured', 'voiding', 'voided', 'failed', 'expired')),
    amount_captured    bigint NOT NULL DEFAULT 0,
    amount_refunded    bigint NOT NULL DEFAULT 0 CHECK (amount_refunded <= amount_captured),
    failure_code       text,
    failure_message    text,
    -- The ledger's pending transfers of an authorization (charge, deposit).
    charge_transfer_id  uuid,
    deposit_transfer_id uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((purpose = 'booking') = (booking_id IS NOT NULL))
);
CREATE UNIQUE INDEX payment_intents_booking ON payment_intents (booking_id) WHERE booking_id IS NOT NULL;
CREATE INDEX payment_intents_user ON payment_intents (user_id, created_at);
CREATE INDEX payment_intents_open ON payment_intents (created_at) WHERE status IN ('authorizing', 'expired');

-- Each webhook event is applied once.
CREATE TABLE payment_webhook_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    outcome     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Money leaving to a bank account: an owner's earnings or a withdrawal.
CREATE TABLE payouts (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('earnings', 'withdrawal')),
    currency           char(3) NOT NULL,
    amount             bigint NOT NULL CHECK (amount > 0),
    status             text NOT NULL CHECK (status IN ('pending', 'in_transit', 'paid', 'failed')),
    provider_payout_id text,
    failure_code       text,
    transfer_id        uuid NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_user ON payouts (user_id, id DESC);
CREATE INDEX payouts_open ON payouts (created_at) WHERE status IN ('pending', 'in_transit');

-- A user's request to take money out of their wallet. The funds are held
-- by a pending ledger transfer until an admin (or the automatic approval of
-- an unflagged request) posts it, or a rejection voids it.
CREATE TABLE withdrawals (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    currency    char(3) NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    status      text NOT NULL CHECK (status IN ('in_review', 'approved', 'rejected')),
    -- The fraud checks that sent it to review: [{"check", "detail"}].
    flags       jsonb NOT NULL DEFAULT '[]',
    transfer_id uuid NOT NULL,
    payout_id   uuid REFERENCES payouts (id),
    decided_by  uuid,
    decided_at  timestamptz,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawals_user ON withdrawals (user_id, created_at DESC);
CREATE INDEX withdrawals_review ON withdrawals (created_at) WHERE status = 'in_review';

-- A booking's money, itemised. Positive rows are what the renter owes for
-- a component; a refund adds negative rows of the components it returns,
-- and the settlement adds the owner's commission. Who is paid for what:
-- rental and delivery → owner; service fee, protection, commission →
-- platform; deposit → held, returned or captured for damage.
CREATE TABLE booking_line_items (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id uuid NOT NULL REFERENCES bookings (id),
    kind       text NOT NULL CHECK (kind IN (
        'rental', 'delivery', 'protection', 'service_fee', 'commission', 'deposit')),
    amount     bigint NOT NULL,
    -- Why the row exists: `charge`, `refund`, `settlement`, `dispute`.
    source     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_line_items_booking ON booking_line_items (booking_id);

-- A booking's escrow paid out to the owner and the platform, once.
CREATE TABLE booking_settlements (
    booking_id  uuid PRIMARY KEY REFERENCES bookings (id),
    owner_id    uuid NOT NULL,
    currency    char(3) NOT NULL,
    owner_amount    bigint NOT NULL,
    platform_amount bigint NOT NULL,
    deposit_released bigint NOT NULL,
    deposit_captured bigint NOT NULL,
    transfer_id uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reconciliation_reports (
    day         date PRIMARY KEY,
    clean       boolean NOT NULL,
    report      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Bookings wait for their payment: the method charged, and until when an
-- unpaid booking holds its unit.
ALTER TABLE bookings
    ADD COLUMN payment_method_id uuid REFERENCES payment_methods (id),
    ADD COLUMN payment_expires_at timestamptz;
CREATE INDEX bookings_awaiting_payment ON bookings (payment_expires_at) WHERE status = 'pending_payment';

-- The placement (20261122000005_booking_placement.sql) now also checks the
-- renter's payment method (402 `payment_method_required` without one) and
-- opens the booking's payment intent in the same statement; the booking
-- then waits in `pending_payment` for the authorization.
DROP FUNCTION place_booking(text, text, bytea, text, text, integer, uuid, integer, integer,
    timestamptz, timestamptz, tstzrange, uuid, uuid, timestamptz, text, text, text);

CREATE FUNCTION place_booking(
    p_principal      text,
    p_key            text,
    p_fingerprint    bytea,
    p_method         text,
    p_path           text,
    p_ttl_hours      integer,
    p_listing        uuid,
    p_listing_version integer,
    p_quantity       integer,
    p_start          timestamptz,
    p_end            timestamptz,
    p_span           tstzrange,
    p_window         uuid,
    p_booking_id     uuid,
    -- A request's approval deadline (its hold on the unit), NULL if approved.
    p_hold_until     timestamptz,
    p_booking        text,
    p_event          text,
    p_response       text,
    -- The renter, the card to charge (NULL: their default) and the id of the
    -- payment intent to open; `p_intent` NULL for a booking with nothing to
    -- pay.
    p_renter         uuid,
    p_payment_method uuid,
    p_intent         uuid,
    OUT outcome      text,
    OUT unit         integer,
    OUT response_status smallint,
    OUT response_body jsonb
) RETURNS record
LANGUAGE plpgsql AS $$
DECLARE
    v_status   text;
    v_version  integer;
    v_fp       bytea;
    v_rstatus  smallint;
    v_rbody    jsonb;
    v_start    timestamptz := p_start;
    v_end      timestamptz := p_end;
    v_unit     integer;
    v_id       uuid := p_booking_id;
    v_booking  jsonb;
    v_event    jsonb;
    v_body     jsonb;
    v_method   uuid;
BEGIN
    IF p_key IS NOT NULL THEN
        IF NOT pg_try_advisory_xact_lock(hashtextextended(p_principal || chr(31) || p_key, 7411)) THEN
            outcome := 'in_progress'::text; unit := NULL::integer; response_status := NULL::smallint; response_body := NULL::jsonb;
            RETURN;
        END IF;
        SELECT k.fingerprint, k.response_status, k.response_body INTO v_fp, v_rstatus, v_rbody
          FROM idempotency_keys k
         WHERE k.principal = p_principal AND k.key = p_key
           AND k.created_at > now() - make_interval(hours => p_ttl_hours);
        IF FOUND THEN
            IF v_fp <> p_fingerprint THEN
                outcome := 'key_reused'::text; unit := NULL::integer; response_status := NULL::smallint; response_body := NULL::jsonb;
            ELSE
                outcome := 'replay'::text; unit := NULL::integer; response_status := v_rstatus; response_body := v_rbody;
            END IF;
            RETURN;
        END IF;
    END IF;

    SELECT l.status, l.version INTO v_status, v_version FROM listings l WHERE l.id = p_listing;
    IF NOT FOUND THEN
        outcome := 'not_found'::text; unit := NULL::integer; response_status := NULL::smallint; response_body := NULL::jsonb;
        RETURN;
    ELSIF v_status <> 'active' THEN
        outcome := 'unavailable'::text; unit := NULL::integer; response_status := NULL::smallint; response_body := to_jsonb(v_status);
        RETURN;
    ELSIF v_version <> p_listing_version THEN
        outcome := 'stale'::text; unit := NULL::integer; response_status := NULL::smallint; response_body := NULL::jsonb;
        RETURN;
    END IF;

    IF EXISTS (SELECT 1 FROM availability_windows w
                WHERE w.listing_id = p_listing AND w.status = 'available')
       AND NOT EXISTS (SELECT 1 FROM availability_windows w
                        WHERE w.listing_id = p_listing AND w.status = 'available'
                          AND w.span @> tstzrange(v_start, v_end)) THEN
        outcome := 'outside_availability'::text; unit := NULL::integer; response_status := NULL::smallint; response_body := NULL::jsonb;
        RETURN;
    END IF;

    IF p_intent IS NOT NULL THEN
        IF p_payment_method IS NULL THEN
            SELECT m.id INTO v_method FROM payment_methods m
             WHERE m.user_id = p_renter AND m.is_default AND m.deleted_at IS NULL;
        ELSE
            SELECT m.id INTO v_method FROM payment_methods m
             WHERE m.id = p_payment_method AND m.user_id = p_renter AND m.deleted_at IS NULL;
        END IF;
        IF v_method IS NULL THEN
            outcome := CASE WHEN p_payment_method IS NULL THEN 'payment_method_required'
                            ELSE 'payment_method_unknown' END;
            RETURN;
        END IF;
    END IF;

    v_unit := claim_unit(p_listing, p_quantity, v_start, v_end, p_span, v_id, p_window, p_hold_until);
    IF v_unit IS NULL OR v_unit < 0 THEN
        outcome := CASE WHEN v_unit IS NULL THEN 'conflict' ELSE 'conflict_expired' END;
        RETURN;
    END IF;

    v_booking := p_booking::jsonb || jsonb_build_object('unit', v_unit, 'idempotency_key', p_key,
                                                        'payment_method_id', v_method);
    v_event := p_event::jsonb;
    INSERT INTO bookings
    SELECT * FROM jsonb_populate_record(NULL::bookings, v_booking);

    INSERT INTO booking_transitions (booking_id, from_status, to_status, event, actor_id)
    VALUES (v_id, NULL, v_booking->>'status', v_event->>'type', (v_booking->>'renter_id')::uuid);

    IF p_intent IS NOT NULL THEN
        INSERT INTO payment_intents (id, purpose, booking_id, user_id, payment_method_id,
                                     currency, amount, deposit, status)
        VALUES (p_intent, 'booking', v_id, p_renter, v_method, v_booking->>'currency',
                (v_booking->>'total')::bigint, (v_booking->>'deposit')::bigint, 'authorizing');
    END IF;

    INSERT INTO events (id, type, aggregate_type, aggregate_id, payload)
    VALUES ((v_event->>'id')::uuid, v_event->>'type', 'booking', v_id::text,
            (v_event->'payload') || jsonb_build_object('unit', v_unit));

    v_body := jsonb_set(p_response::jsonb, '{unit}', to_jsonb(v_unit));
    IF v_method IS NOT NULL THEN
        v_body := jsonb_set(v_body, '{payment_method_id}', to_jsonb(v_method));
    END IF;
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (principal, key, method, path, fingerprint, response_status, response_body)
        VALUES (p_principal, p_key, p_method, p_path, p_fingerprint, 201, v_body)
        ON CONFLICT (principal, key) DO UPDATE
           SET method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint,
               response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
               created_at = now();
    END IF;

    outcome := 'created'::text; unit := v_unit; response_status := 201::smallint; response_body := v_body;
END;
$$;
