-- Listings: the category tree, listings of three kinds (item, service,
-- property), their media uploads, and availability per unit of inventory.
--
-- Double booking is impossible by construction: every `blocked` or `booked`
-- window occupies one unit of a listing for a time range, and the exclusion
-- constraint `availability_no_overlap` refuses two such windows on the same
-- (listing, unit) whose ranges overlap. Bookings write their `booked`
-- window in the same transaction as the booking row.

CREATE TABLE categories (
    id          uuid PRIMARY KEY,
    parent_id   uuid REFERENCES categories (id),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]+$'),
    name        text NOT NULL,
    -- The listing type a category belongs to; children share their root's.
    kind        text NOT NULL CHECK (kind IN ('item', 'service', 'property')),
    position    integer NOT NULL DEFAULT 0
);
CREATE INDEX categories_parent_idx ON categories (parent_id);

-- The seeded tree. Ids are fixed (UUIDv5-like constants) so demo data and
-- clients can refer to them; slugs are the stable human handle.
INSERT INTO categories (id, parent_id, slug, name, kind, position) VALUES
    ('0190c000-0000-7000-8000-000000000001', NULL, 'items', 'Items', 'item', 1),
    ('0190c000-0000-7000-8000-000000000002', NULL, 'services', 'Services', 'service', 2),
    ('0190c000-0000-7000-8000-000000000003', NULL, 'properties', 'Properties', 'property', 3),
    ('0190c000-0000-7000-8000-000000000101', '0190c000-0000-7000-8000-000000000001', 'cameras', 'Cameras & photo', 'item', 1),
    ('0190c000-0000-7000-8000-000000000102', '0190c000-0000-7000-8000-000000000101', 'lenses', 'Lenses', 'item', 1),
    ('0190c000-0000-7000-8000-000000000103', '0190c000-0000-7000-8000-000000000101', 'drones', 'Drones', 'item', 2),
    ('0190c000-0000-7000-8000-000000000104', '0190c000-0000-7000-8000-000000000001', 'bikes', 'Bikes', 'item', 2),
    ('0190c000-0000-7000-8000-000000000105', '0190c000-0000-7000-8000-000000000104', 'e-bikes', 'E-bikes', 'item', 1),
    ('0190c000-0000-7000-8000-000000000106', '0190c000-0000-7000-8000-000000000001', 'tools', 'Tools', 'item', 3),
    ('0190c000-0000-7000-8000-000000000107', '0190c000-0000-7000-8000-000000000106', 'power-tools', 'Power tools', 'item', 1),
    ('0190c000-0000-7000-8000-000000000108', '0190c000-0000-7000-8000-000000000001', 'camping', 'Camping & outdoor', 'item', 4),
    ('0190c000-0000-7000-8000-000000000109', '0190c000-0000-7000-8000-000000000001', 'audio', 'Audio & music', 'item', 5),
    ('0190c000-0000-7000-8000-000000000201', '0190c000-0000-7000-8000-000000000002', 'photography', 'Photography', 'service', 1),
    ('0190c000-0000-7000-8000-000000000202', '0190c000-0000-7000-8000-000000000002', 'moving', 'Moving', 'service', 2),
    ('0190c000-0000-7000-8000-000000000203', '0190c000-0000-7000-8000-000000000002', 'repair', 'Repair', 'service', 3),
    ('0190c000-0000-7000-8000-000000000204', '0190c000-0000-7000-8000-000000000002', 'cleaning', 'Cleaning', 'service', 4),
    ('0190c000-0000-7000-8000-000000000301', '0190c000-0000-7000-8000-000000000003', 'apartment', 'Apartments', 'property', 1),
    ('0190c000-0000-7000-8000-000000000302', '0190c000-0000-7000-8000-000000000003', 'room', 'Rooms', 'property', 2),
    ('0190c000-0000-7000-8000-000000000303', '0190c000-0000-7000-8000-000000000003', 'house', 'Houses', 'property', 3);

CREATE TABLE listings (
    id                  uuid PRIMARY KEY,
    owner_id            uuid NOT NULL REFERENCES users (id),
    type                text NOT NULL CHECK (type IN ('item', 'service', 'property')),
    status              text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'pending_review', 'active', 'paused', 'rejected', 'archived')),
    title               text,
    description         text,
    category_id         uuid REFERENCES categories (id),
    -- Ordered `{id, url, type, alt, thumbnail_url}`; written by the media flow.
    media               jsonb NOT NULL DEFAULT '[]',
    location            geography(Point, 4326),
    -- IANA zone: days, weeks, notice and availability are reckoned in it.
    time_zone           text NOT NULL DEFAULT 'UTC',
    -- `{hourly, daily, weekly, deposit, currency}`, minor units.
    pricing             jsonb,
    quantity            integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 1000),
    condition           text CHECK (condition IN ('new', 'like_new', 'good', 'fair')),
    included_items      text[] NOT NULL DEFAULT '{}',
    service_scope       text,
    -- `[{name, price, description}]`, services only.
    service_packages    jsonb NOT NULL DEFAULT '[]',
    -- `{property_type, bedrooms, bathrooms, area_sqm, amenities}`, properties only.
    property            jsonb,
    -- `{pickup, delivery, delivery_fee}`.
    delivery_options    jsonb NOT NULL DEFAULT '{"pickup": true, "delivery": false, "delivery_fee": 0}',
    -- `{cancellation: flexible|moderate|strict, damage, late_return}`.
    policies            jsonb NOT NULL DEFAULT '{"cancellation": "moderate", "damage": null, "late_return": null}',
    -- `{buffer_minutes, min_notice_minutes, max_advance_days,
    --   min_duration_minutes, max_duration_minutes}`.
    booking_rules       jsonb NOT NULL DEFAULT '{}',
    instant_book        boolean NOT NULL DEFAULT false,
    rejection_reason    text,
    reviewed_by         uuid REFERENCES users (id),
    reviewed_at         timestamptz,
    published_at        timestamptz,
    archived_at         timestamptz,
    -- Optimistic concurrency: the ETag; bumped by every change.
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX listings_owner_idx ON listings (owner_id, id DESC);
CREATE INDEX listings_status_idx ON listings (status, id DESC);
CREATE INDEX listings_category_idx ON listings (category_id);
CREATE INDEX listings_location_idx ON listings USING gist (location);

-- Uploads in flight and attached media. An upload is `pending` until the
-- client confirms it; then it is `attached` and appears in `listings.media`.
CREATE TABLE listing_media (
    id              uuid PRIMARY KEY,
    listing_id      uuid NOT NULL REFERENCES listings (id),
    object_key      text NOT NULL UNIQUE,
    content_type    text NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes > 0),
    alt             text,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'attached', 'removed')),
    position        integer,
    thumbnail_key   text,
    upload_expires_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attached_at     timestamptz
);
CREATE INDEX listing_media_listing_idx ON listing_media (listing_id, position);

-- Availability. `available` windows are the owner's opening hours (when any
-- exist, bookings must fall inside one); `blocked` (owner) and `booked`
-- (a booking) occupy one unit each. `span` is what a window occupies: for a
-- booking, its time plus the listing's buffer after it.
CREATE TABLE availability_windows (
    id              uuid PRIMARY KEY,
    listing_id      uuid NOT NULL REFERENCES listings (id),
    -- 0 .. quantity-1 for blocked/booked; NULL for available (all units).
    unit            integer CHECK (unit >= 0),
    status          text NOT NULL CHECK (status IN ('available', 'blocked', 'booked')),
    start_time      timestamptz NOT NULL,
    end_time        timestamptz NOT NULL,
    span            tstzrange NOT NULL,
    booking_id      uuid,
    -- A booking request's window: when its hold on the unit lapses (the
    -- request is then declined); NULL for approved bookings and blocks.
    hold_expires_at timestamptz,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (start_time < end_time),
    CHECK ((status = 'available') = (unit IS NULL)),
    CHECK ((status = 'booked') = (booking_id IS NOT NULL)),
    CONSTRAINT availability_no_overlap EXCLUDE USING gist
        (listing_id WITH =, unit WITH =, span WITH &&) WHERE (status <> 'available'),
    CONSTRAINT availability_open_no_overlap EXCLUDE USING gist
        (listing_id WITH =, span WITH &&) WHERE (status = 'available')
);
CREATE INDEX availability_booking_idx ON availability_windows (booking_id) WHERE booking_id IS NOT NULL;

-- Claims one free unit of `p_listing` for `p_span` as a `booked` window, in
-- one round trip, and returns the unit; NULL when every unit is taken, or -1
-- when every unit is taken and some overlapping window is a request whose
-- hold lapsed (the caller declines those requests and tries again).
-- One index scan finds the units already busy in that range; the others are
-- tried in turn (from a varying offset, so concurrent requests spread out)
-- with ON CONFLICT DO NOTHING, which uses the exclusion constraint as its
-- arbiter: two claims on one unit wait for each other inside the
-- constraint check, so the answer is exact under any concurrency, and a
-- sold-out listing costs one scan, not one probe per unit.
CREATE FUNCTION claim_unit(
    p_listing uuid, p_quantity integer, p_start timestamptz, p_end timestamptz,
    p_span tstzrange, p_booking uuid, p_window uuid, p_hold_until timestamptz
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    busy integer[];
    lapsed boolean;
    offs integer;
    u integer;
    got integer;
BEGIN
    SELECT coalesce(array_agg(DISTINCT w.unit), '{}'), coalesce(bool_or(w.hold_expires_at <= now()), false)
      INTO busy, lapsed
      FROM availability_windows w
     WHERE w.listing_id = p_listing AND w.status <> 'available' AND w.span && p_span;
    IF cardinality(busy) >= p_quantity THEN
        RETURN CASE WHEN lapsed THEN -1 END;
    END IF;
    offs := floor(random() * p_quantity)::integer;
    FOR i IN 0 .. p_quantity - 1 LOOP
        u := (offs + i) % p_quantity;
        CONTINUE WHEN u = ANY (busy);
        INSERT INTO availability_windows
               (id, listing_id, unit, status, start_time, end_time, span, booking_id, hold_expires_at)
        VALUES (p_window, p_listing, u, 'booked', p_start, p_end, p_span, p_booking, p_hold_until)
        ON CONFLICT DO NOTHING
        RETURNING unit INTO got;
        IF got IS NOT NULL THEN
            RETURN got;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
