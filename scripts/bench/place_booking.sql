-- The statement rentify sends per booking attempt (crates/bookings/src/
-- placement.rs), for pgbench: the same function with the same JSON text
-- documents, a fresh booking id and Idempotency-Key each time, and the
-- renter's default card for its payment intent.
-- scripts/bench.sh fills in :listing, :renter, :owner and :version.
SELECT r.outcome, r.unit
  FROM (SELECT gen_random_uuid() AS bid, gen_random_uuid()::text AS k) ids,
LATERAL place_booking(
    ':renter', ids.k, sha256(ids.k::bytea), 'POST', '/v1/bookings', 24,
    ':listing', :version, 10,
    '2030-06-01T10:00:00Z', '2030-06-03T10:00:00Z',
    tstzrange('2030-06-01T10:00:00Z', '2030-06-03T10:00:00Z'), gen_random_uuid(), ids.bid, NULL,
    replace(replace('{"id": "BID", "listing_id": ":listing", "renter_id": ":renter", "owner_id": ":owner",
        "parent_id": null, "unit": 0, "status": "approved", "status_reason": null,
        "start_time": "2030-06-01T10:00:00Z", "end_time": "2030-06-03T10:00:00Z",
        "time_zone": "Europe/Berlin", "delivery_method": "pickup", "delivery_address": null,
        "protection_plan": "basic", "service_package": null, "cancellation_policy": "moderate",
        "currency": "EUR",
        "pricing_snapshot": {"currency": "EUR", "duration": {"weeks": 0, "days": 2, "hours": 0},
            "line_items": [{"kind": "daily", "quantity": 2, "unit_amount": 3500, "amount": 7000}],
            "subtotal": 7000, "fees": {"service_fee": 700, "delivery_fee": 0, "insurance": 350},
            "deposit": 20000, "total": 28050},
        "subtotal": 7000, "fees": {"service_fee": 700, "delivery_fee": 0, "insurance": 350},
        "deposit": 20000, "total": 28050, "idempotency_key": "KEY",
        "approval_expires_at": null, "approved_at": "2026-11-22T00:00:00Z", "cancelled_by": null,
        "refund": null, "dispute": null, "resolution": null, "version": 1,
        "created_at": "2026-11-22T00:00:00Z", "updated_at": "2026-11-22T00:00:00Z"}', 'BID', ids.bid::text), 'KEY', ids.k),
    replace('{"id": "' || gen_random_uuid() || '", "type": "booking.approved",
        "payload": {"booking_id": "BID", "listing_id": ":listing", "renter_id": ":renter",
            "owner_id": ":owner", "status": "approved", "start_time": "2030-06-01T10:00:00Z",
            "end_time": "2030-06-03T10:00:00Z", "total": 28050, "currency": "EUR",
            "actor_id": ":renter"}}', 'BID', ids.bid::text),
    replace('{"id": "BID", "object": "booking", "status": "approved", "unit": 0,
        "listing_id": ":listing", "total": 28050, "currency": "EUR"}', 'BID', ids.bid::text),
    ':renter', NULL, gen_random_uuid()
) r;
