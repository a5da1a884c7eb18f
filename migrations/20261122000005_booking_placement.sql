-- Placing a booking in one round trip.
--
-- The bookings module validates and prices a booking in Rust (pure
-- functions), then hands the finished row to `place_booking`, which does
-- the part that must be atomic, in a single statement:
--
--   1. the Idempotency-Key, exactly as `rentify_platform::idempotency`
--      does it (same advisory lock, same table, same replay rules);
--   2. the listing is still active and unchanged since the terms were read
--      (`version`), so cached terms are safe;
--   3. the booking lies inside the owner's opening hours, when there are any;
--   4. a unit is claimed through `claim_unit` (the exclusion constraint);
--   5. the booking, its first transition, its outbox event and the stored
--      idempotent response are written.
--
-- Why a function: a booking race is decided by round trips. Five statements
-- in an explicit transaction cost ~3x one statement on the benchmark
-- machine (docs/adr/0008-double-booking-and-placement.md). Nothing here
-- decides business rules; it only persists what Rust decided.
--
-- The row, the event and the response arrive as JSON text and are parsed
-- only once a unit is claimed: most attempts in a race are conflicts, and
-- parsing three documents costs more than the rest of a refusal.
--
-- Outcomes: created | replay | key_reused | in_progress | not_found |
-- unavailable | stale | outside_availability | conflict | conflict_expired
-- (a conflict where some overlapping request is past its approval window:
-- the caller declines those and tries again).

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
    p_response       text
,
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

    v_unit := claim_unit(p_listing, p_quantity, v_start, v_end, p_span, v_id, p_window, p_hold_until);
    IF v_unit IS NULL OR v_unit < 0 THEN
        outcome := CASE WHEN v_unit IS NULL THEN 'conflict' ELSE 'conflict_expired' END;
        RETURN;
    END IF;

    v_booking := p_booking::jsonb || jsonb_build_object('unit', v_unit, 'idempotency_key', p_key);
    v_event := p_event::jsonb;
    INSERT INTO bookings
    SELECT * FROM jsonb_populate_record(NULL::bookings, v_booking);

    INSERT INTO booking_transitions (booking_id, from_status, to_status, event, actor_id)
    VALUES (v_id, NULL, v_booking->>'status', v_event->>'type', (v_booking->>'renter_id')::uuid);

    INSERT INTO events (id, type, aggregate_type, aggregate_id, payload)
    VALUES ((v_event->>'id')::uuid, v_event->>'type', 'booking', v_id::text,
            (v_event->'payload') || jsonb_build_object('unit', v_unit));

    v_body := jsonb_set(p_response::jsonb, '{unit}', to_jsonb(v_unit));
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
