-- Bookings: the state machine's rows, their immutable price, and the
-- history of every transition. A booking's time is held by its `booked`
-- availability window (listings module), written in the same transaction.

CREATE TABLE bookings (
    id                  uuid PRIMARY KEY,
    listing_id          uuid NOT NULL REFERENCES listings (id),
    renter_id           uuid NOT NULL REFERENCES users (id),
    -- Denormalized from the listing for "my rentals" queries.
    owner_id            uuid NOT NULL REFERENCES users (id),
    -- An extension is a child booking of the one it extends.
    parent_id           uuid REFERENCES bookings (id),
    unit                integer NOT NULL CHECK (unit >= 0),
    status              text NOT NULL CHECK (status IN (
        'pending_payment', 'requested', 'approved', 'declined', 'cancelled',
        'active', 'completed', 'disputed', 'resolved')),
    -- Why the booking reached its status (e.g. `approval_timeout`).
    status_reason       text,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz NOT NULL,
    time_zone           text NOT NULL,
    delivery_method     text NOT NULL CHECK (delivery_method IN ('pickup', 'delivery')),
    delivery_address    jsonb,
    protection_plan     text NOT NULL CHECK (protection_plan IN ('none', 'basic', 'premium')),
    service_package     text,
    cancellation_policy text NOT NULL CHECK (cancellation_policy IN ('flexible', 'moderate', 'strict')),
    currency            char(3) NOT NULL,
    pricing_snapshot    jsonb NOT NULL,
    subtotal            bigint NOT NULL CHECK (subtotal >= 0),
    fees                jsonb NOT NULL,
    deposit             bigint NOT NULL CHECK (deposit >= 0),
    total               bigint NOT NULL CHECK (total >= 0),
    idempotency_key     text,
    -- A request holds its slot until then; the approval timer declines it.
    approval_expires_at timestamptz,
    -- When the owner (or instant book) approved it: from then on the
    -- parties see each other's contact details.
    approved_at         timestamptz,
    cancelled_by        uuid REFERENCES users (id),
    -- `{amount, currency, policy, notice_hours, ...}` from the refund policy.
    refund              jsonb,
    dispute             jsonb,
    resolution          jsonb,
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (start_time < end_time),
    CHECK ((delivery_method = 'delivery') = (delivery_address IS NOT NULL)),
    CONSTRAINT bookings_renter_idempotency_key UNIQUE (renter_id, idempotency_key)
);
CREATE INDEX bookings_renter_idx ON bookings (renter_id, id DESC);
CREATE INDEX bookings_owner_idx ON bookings (owner_id, id DESC);
CREATE INDEX bookings_listing_idx ON bookings (listing_id, start_time);
CREATE INDEX bookings_parent_idx ON bookings (parent_id) WHERE parent_id IS NOT NULL;

-- The price a booking was made at never changes.
CREATE FUNCTION bookings_price_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.pricing_snapshot IS DISTINCT FROM OLD.pricing_snapshot
       OR NEW.subtotal IS DISTINCT FROM OLD.subtotal
       OR NEW.fees IS DISTINCT FROM OLD.fees
       OR NEW.deposit IS DISTINCT FROM OLD.deposit
       OR NEW.total IS DISTINCT FROM OLD.total
       OR NEW.currency IS DISTINCT FROM OLD.currency THEN
        RAISE EXCEPTION 'a booking''s pricing snapshot is immutable'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_price_immutable';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER bookings_price_immutable BEFORE UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_price_immutable();

-- Every transition, who made it and why: the audit trail of a booking.
CREATE TABLE booking_transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id  uuid NOT NULL REFERENCES bookings (id),
    from_status text,
    to_status   text NOT NULL,
    event       text NOT NULL,
    -- NULL for the system (timers).
    actor_id    uuid REFERENCES users (id),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_transitions_booking_idx ON booking_transitions (booking_id, id);
