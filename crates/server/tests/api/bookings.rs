//! Bookings over HTTP: creation and its checks, idempotency, pricing and
//! quotes, the state machine with who may do what, contact reveal, lists
//! and the outbox. Races live in `bookings_races.rs`, timers and
//! extensions in `bookings_timers.rs`.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, header::HeaderMap};
use serde_json::{Value, json};

use crate::support::{TestApp, error_code, parts};

pub struct Parties {
    pub owner_id: String,
    pub owner: String,
    pub renter_id: String,
    pub renter: String,
}

pub async fn parties(app: &TestApp) -> Parties {
    let (owner_id, owner) = app.user("owner@example.com").await;
    let (renter_id, renter) = app.renter("renter@example.com").await;
    Parties {
        owner_id,
        owner,
        renter_id,
        renter,
    }
}

/// `days` from today at `hour`:00 UTC.
pub fn day(days: i64, hour: u32) -> DateTime<Utc> {
    (Utc::now().date_naive() + Duration::days(days))
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
}

pub fn body(listing: &Value, start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    json!({
        "listing_id": listing["id"],
        "start_time": start.to_rfc3339(),
        "end_time": end.to_rfc3339(),
        "delivery_method": "pickup",
    })
}

/// `POST /v1/bookings` with `key` as `Idempotency-Key`.
pub async fn book(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, HeaderMap, Value) {
    let mut request = app
        .client
        .post(app.url("/v1/bookings"))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    parts(request.send().await.unwrap()).await
}

/// `book` that must succeed; returns the booking.
pub async fn booked(app: &TestApp, token: &str, body: &Value) -> Value {
    let key = uuid::Uuid::now_v7().to_string();
    let (status, _, booking) = book(app, token, Some(&key), body).await;
    assert_eq!(status, 201, "{booking}");
    booking
}

/// `POST /v1/bookings/{id}/{action}`.
pub async fn act(
    app: &TestApp,
    token: &str,
    booking: &Value,
    action: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let id = booking["id"].as_str().unwrap();
    app.call_parts(
        Method::POST,
        &format!("/v1/bookings/{id}/{action}"),
        Some(token),
        body.as_ref(),
    )
    .await
}

pub async fn events_of(app: &TestApp, booking_id: &str) -> Vec<(String, Value)> {
    sqlx::query_as("SELECT type, payload FROM events WHERE aggregate_id = $1 ORDER BY position")
        .bind(booking_id)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn bookings_instant_book_is_approved_and_requests_wait_for_the_owner() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let instant = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&instant, day(10, 10), day(12, 10))).await;
    assert_eq!(b["object"], "booking");
    assert_eq!(b["status"], "approved");
    assert_eq!(b["renter_id"], p.renter_id.as_str());
    assert_eq!(b["owner_id"], p.owner_id.as_str());
    assert_eq!(b["unit"], 0);
    assert_eq!(b["approval_expires_at"], Value::Null);
    assert_eq!(b["time_zone"], "Europe/Paris");
    assert_eq!(b["cancellation_policy"], "moderate");
    assert_eq!(b["currency"], "EUR");
    // 2 days at 2500: subtotal 5000, 10 % service fee, 30000 deposit.
    assert_eq!(b["subtotal"], 5000);
    assert_eq!(b["fees"]["service_fee"], 500);
    assert_eq!(b["deposit"], 30000);
    assert_eq!(b["total"], 35500);
    assert_eq!(b["pricing_snapshot"]["total"], 35500);
    assert_eq!(b["pricing_snapshot"]["duration"]["days"], 2);
    // Approved: the renter sees the owner's contact details.
    assert_eq!(b["counterparty"]["id"], p.owner_id.as_str());
    assert_eq!(b["counterparty"]["contact"]["email"], "owner@example.com");
    // Placed awaiting its payment, approved once the card is authorized.
    let events = events_of(&app, b["id"].as_str().unwrap()).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, "booking.pending_payment");
    assert_eq!(events[1].0, "booking.approved");
    assert_eq!(events[1].1["renter_id"], p.renter_id.as_str());
    assert_eq!(events[1].1["status"], "approved");

    let manual = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let r = booked(&app, &p.renter, &body(&manual, day(10, 10), day(11, 10))).await;
    assert_eq!(r["status"], "requested");
    let expires: DateTime<Utc> = r["approval_expires_at"].as_str().unwrap().parse().unwrap();
    let window = expires - Utc::now();
    assert!(
        window > Duration::hours(23) && window <= Duration::hours(24),
        "{window}"
    );
    assert_eq!(r["counterparty"]["contact"], Value::Null);
    let events = events_of(&app, r["id"].as_str().unwrap()).await;
    assert_eq!(events[0].0, "booking.pending_payment");
    assert_eq!(events[1].0, "booking.requested");
    let transitions = count(
        &app,
        &format!(
            "SELECT count(*) FROM booking_transitions WHERE booking_id = '{}' AND to_status = 'requested'",
            r["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(transitions, 1);
    // The approval timer is enqueued with the booking.
    let timers = count(
        &app,
        "SELECT count(*) FROM underway.task WHERE task_queue_name = 'bookings.approval_timeout'",
    )
    .await;
    // A payment-deadline timer per booking, and the request's approval timer.
    assert_eq!(timers, 3);
    // The booking holds its unit.
    let windows = count(
        &app,
        &format!(
            "SELECT count(*) FROM availability_windows WHERE booking_id = '{}' AND status = 'booked'",
            r["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(windows, 1);
}

#[tokio::test]
async fn bookings_need_an_idempotency_key_and_replay_retries() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let request = body(&listing, day(5, 9), day(5, 17));

    let (status, _, error) = book(&app, &p.renter, None, &request).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    assert_eq!(error["error"]["details"][0]["field"], "Idempotency-Key");

    let (status, headers, first) = book(&app, &p.renter, Some("key-1"), &request).await;
    assert_eq!(status, 201, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = book(&app, &p.renter, Some("key-1"), &request).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], first["id"]);

    let other = body(&listing, day(6, 9), day(6, 17));
    let (status, _, error) = book(&app, &p.renter, Some("key-1"), &other).await;
    assert_eq!(
        (status, error_code(&error)),
        (422, "idempotency_key_reused")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM bookings").await, 1);

    // Unauthenticated.
    let (status, _) = app
        .call_parts(Method::POST, "/v1/bookings", None, Some(&request))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bookings_enforce_the_listings_rules() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(
            &p.owner,
            json!({"booking_rules": {
                "buffer_minutes": 60, "min_notice_minutes": 120, "max_advance_days": 30,
                "min_duration_minutes": 60, "max_duration_minutes": 4320
            }}),
        )
        .await;
    let soon = Utc::now() + Duration::minutes(30);
    let cases = [
        (soon, soon + Duration::hours(2), "min_notice"),
        (day(40, 10), day(41, 10), "max_advance"),
        (
            day(5, 10),
            day(5, 10) + Duration::minutes(30),
            "min_duration",
        ),
        (day(5, 10), day(9, 10), "max_duration"),
    ];
    for (start, end, rule) in cases {
        let (status, _, error) = book(
            &app,
            &p.renter,
            Some(&format!("rule-{rule}")),
            &body(&listing, start, end),
        )
        .await;
        assert_eq!(status, 400, "{rule}: {error}");
        assert_eq!(error_code(&error), "booking_rule_violated");
        assert_eq!(error["error"]["details"][0]["rule"], rule);
        assert!(error["error"]["message"].as_str().unwrap().contains(rule));
    }
    // Bad shapes are refused before anything else.
    let (status, _, error) = book(
        &app,
        &p.renter,
        Some("backwards"),
        &body(&listing, day(5, 12), day(5, 10)),
    )
    .await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));

    // The buffer keeps the hour after a booking free.
    booked(&app, &p.renter, &body(&listing, day(5, 10), day(5, 12))).await;
    let (status, _, error) = book(
        &app,
        &p.renter,
        Some("in-buffer"),
        &body(&listing, day(5, 12) + Duration::minutes(30), day(5, 15)),
    )
    .await;
    assert_eq!((status, error_code(&error)), (409, "booking_conflict"));
    booked(&app, &p.renter, &body(&listing, day(5, 13), day(5, 15))).await;
    assert_eq!(count(&app, "SELECT count(*) FROM bookings").await, 2);
}

#[tokio::test]
async fn bookings_respect_opening_hours_delivery_packages_and_listing_state() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(
            &p.owner,
            json!({"delivery_options": {"pickup": true, "delivery": false, "delivery_fee": 0}}),
        )
        .await;
    let id = listing["id"].as_str().unwrap();
    // Opening hours: day 5, 08:00–18:00.
    sqlx::query(
        "INSERT INTO availability_windows (id, listing_id, status, start_time, end_time, span)
         VALUES (gen_random_uuid(), $1::uuid, 'available', $2, $3, tstzrange($2, $3))",
    )
    .bind(id)
    .bind(day(5, 8))
    .bind(day(5, 18))
    .execute(&app.db)
    .await
    .unwrap();
    let (status, _, error) = book(
        &app,
        &p.renter,
        Some("outside"),
        &body(&listing, day(5, 17), day(5, 19)),
    )
    .await;
    assert_eq!((status, error_code(&error)), (409, "outside_availability"));
    booked(&app, &p.renter, &body(&listing, day(5, 9), day(5, 11))).await;

    // Delivery: not offered; an address needs delivery and vice versa.
    let mut delivery = body(&listing, day(5, 12), day(5, 13));
    delivery["delivery_method"] = "delivery".into();
    let (status, _, error) = book(&app, &p.renter, Some("d1"), &delivery).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    assert_eq!(error["error"]["details"][0]["field"], "delivery_address");
    delivery["delivery_address"] = json!({"line1": "1 Rue de Rivoli", "city": "Paris", "postal_code": "75001", "country": "FR"});
    let (status, _, error) = book(&app, &p.renter, Some("d2"), &delivery).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    assert_eq!(error["error"]["details"][0]["code"], "not_offered");
    let mut pickup = delivery.clone();
    pickup["delivery_method"] = "pickup".into();
    let (status, _, error) = book(&app, &p.renter, Some("d3"), &pickup).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    assert_eq!(error["error"]["details"][0]["code"], "not_allowed");

    // Packages: only services have them, and only the listed ones.
    let mut package = body(&listing, day(5, 12), day(5, 13));
    package["service_package"] = "full-day".into();
    let (status, _, error) = book(&app, &p.renter, Some("p1"), &package).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    sqlx::query(
        // Every change of a listing bumps its version (bookings cache the terms
        // and rely on it).
        "UPDATE listings SET type = 'service', version = version + 1,
                service_packages = '[{\"name\": \"full-day\", \"price\": 40000}]' WHERE id = $1::uuid",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
    let b = booked(&app, &p.renter, &package).await;
    assert_eq!(b["service_package"], "full-day");
    assert_eq!(b["subtotal"], 40000);
    package["service_package"] = "half-day".into();
    let (status, _, error) = book(&app, &p.renter, Some("p3"), &package).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    assert_eq!(error["error"]["details"][0]["code"], "unknown");

    // One's own listing, a paused listing, an unknown one.
    let (status, _, error) = book(
        &app,
        &p.owner,
        Some("own"),
        &body(&listing, day(5, 14), day(5, 15)),
    )
    .await;
    assert_eq!((status, error_code(&error)), (403, "own_listing"));
    sqlx::query("UPDATE listings SET status = 'paused' WHERE id = $1::uuid")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let (status, _, error) = book(
        &app,
        &p.renter,
        Some("paused"),
        &body(&listing, day(5, 14), day(5, 15)),
    )
    .await;
    assert_eq!((status, error_code(&error)), (409, "listing_unavailable"));
    let unknown = json!({"id": uuid::Uuid::now_v7()});
    let (status, _, error) = book(
        &app,
        &p.renter,
        Some("unknown"),
        &body(&unknown, day(5, 14), day(5, 15)),
    )
    .await;
    assert_eq!((status, error_code(&error)), (404, "not_found"));
}

#[tokio::test]
async fn bookings_price_is_a_snapshot_quotes_match_and_days_follow_the_local_calendar() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(
            &p.owner,
            json!({"time_zone": "Europe/Berlin", "quantity": 2}),
        )
        .await;
    // Saturday 10:00 → Monday 10:00 in Berlin across the spring-forward
    // night of 2027-03-28: 47 real hours, two local days.
    // Sat 10:00 CET = 09:00Z; Mon 10:00 CEST = 08:00Z.
    let sat: DateTime<Utc> = "2027-03-27T09:00:00Z".parse().unwrap();
    let mon: DateTime<Utc> = "2027-03-29T08:00:00Z".parse().unwrap();
    assert_eq!(mon - sat, Duration::hours(47));
    let mut request = body(&listing, sat, mon);
    request["protection_plan"] = "basic".into();
    request["delivery_method"] = "delivery".into();
    request["delivery_address"] = json!({"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"});

    let (status, quote) = app
        .call_parts(
            Method::POST,
            "/v1/bookings/quote",
            Some(&p.renter),
            Some(&request),
        )
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["object"], "booking_quote");
    assert_eq!(quote["available"], true);
    assert_eq!(
        quote["duration"],
        json!({"weeks": 0, "days": 2, "hours": 0})
    );
    assert_eq!(quote["subtotal"], 5000);
    assert_eq!(quote["fees"]["delivery_fee"], 800);
    assert_eq!(quote["fees"]["insurance"], 250);
    // A quote changes nothing.
    assert_eq!(count(&app, "SELECT count(*) FROM bookings").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM availability_windows").await,
        0
    );

    let b = booked(&app, &p.renter, &request).await;
    assert_eq!(b["pricing_snapshot"]["duration"]["days"], 2);
    for field in [
        "subtotal",
        "fees",
        "deposit",
        "total",
        "currency",
        "line_items",
    ] {
        let stored = if field == "line_items" {
            &b["pricing_snapshot"][field]
        } else {
            &b[field]
        };
        assert_eq!(stored, &quote[field], "{field}");
    }
    assert_eq!(b["delivery_address"]["city"], "Berlin");

    // The snapshot cannot change, not even from SQL.
    let tampered = sqlx::query("UPDATE bookings SET total = total + 1 WHERE id = $1::uuid")
        .bind(b["id"].as_str().unwrap())
        .execute(&app.db)
        .await;
    assert!(tampered.is_err());
    let tampered = sqlx::query("UPDATE bookings SET pricing_snapshot = '{}' WHERE id = $1::uuid")
        .bind(b["id"].as_str().unwrap())
        .execute(&app.db)
        .await;
    assert!(tampered.is_err());

    // Both units taken: the quote says so; the time is still priced.
    booked(&app, &p.renter, &request).await;
    let (status, quote) = app
        .call_parts(
            Method::POST,
            "/v1/bookings/quote",
            Some(&p.renter),
            Some(&request),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(quote["available"], false);
    let (status, _, error) = book(&app, &p.renter, Some("third"), &request).await;
    assert_eq!((status, error_code(&error)), (409, "booking_conflict"));
}

#[tokio::test]
async fn bookings_transitions_follow_the_state_machine_and_the_parties() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, stranger) = app.user("stranger@example.com").await;
    let (_, admin) = app.admin("admin@example.com").await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false, "quantity": 5}))
        .await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(11, 10))).await;
    let id = b["id"].as_str().unwrap().to_owned();

    // Before approval, no contact details either way.
    let (status, seen) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}"),
            Some(&p.owner),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(seen["counterparty"]["id"], p.renter_id.as_str());
    assert_eq!(seen["counterparty"]["contact"], Value::Null);
    let (status, _) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, seen) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(seen["counterparty"], Value::Null);

    // Wrong party, stranger, then the owner.
    let (status, error) = act(&app, &p.renter, &b, "approve", None).await;
    assert_eq!((status, error_code(&error)), (403, "forbidden"));
    let (status, _) = act(&app, &stranger, &b, "approve", None).await;
    assert_eq!(status, 404);
    let (status, error) = act(&app, &p.owner, &b, "start", None).await;
    assert_eq!((status, error_code(&error)), (409, "invalid_transition"));
    assert_eq!(error["error"]["details"][0]["current_status"], "requested");
    let (status, approved) = act(&app, &p.owner, &b, "approve", None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(
        approved["counterparty"]["contact"]["email"],
        "renter@example.com"
    );
    let (_, seen) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}"),
            Some(&p.renter),
            None,
        )
        .await;
    assert_eq!(
        seen["counterparty"]["contact"]["email"],
        "owner@example.com"
    );
    let (status, error) = act(&app, &p.owner, &b, "approve", None).await;
    assert_eq!((status, error_code(&error)), (409, "invalid_transition"));
    assert_eq!(error["error"]["details"][0]["current_status"], "approved");

    let (status, error) = act(&app, &p.renter, &b, "start", None).await;
    assert_eq!((status, error_code(&error)), (403, "forbidden"));
    let (status, active) = act(&app, &p.owner, &b, "start", None).await;
    assert_eq!((status, active["status"].as_str()), (200, Some("active")));
    let (status, error) = act(&app, &p.renter, &b, "cancel", None).await;
    assert_eq!((status, error_code(&error)), (409, "invalid_transition"));
    let (status, done) = act(&app, &p.owner, &b, "complete", None).await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")));
    let (status, error) = act(&app, &p.renter, &b, "dispute", None).await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));
    let (status, disputed) = act(
        &app,
        &p.renter,
        &b,
        "dispute",
        Some(json!({"reason": "the lens was scratched"})),
    )
    .await;
    assert_eq!(status, 200, "{disputed}");
    assert_eq!(disputed["status"], "disputed");
    assert_eq!(disputed["dispute"]["reason"], "the lens was scratched");
    let (status, _) = act(
        &app,
        &p.owner,
        &b,
        "resolve",
        Some(json!({"resolution": "refund"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, resolved) = act(
        &app,
        &admin,
        &b,
        "resolve",
        Some(json!({"resolution": "partial_refund", "note": "50 % of the deposit"})),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolution"]["note"], "50 % of the deposit");

    let events: Vec<String> = events_of(&app, &id)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        events,
        [
            "booking.pending_payment",
            "booking.requested",
            "booking.approved",
            "booking.started",
            "booking.completed",
            "booking.disputed",
            "booking.resolved"
        ]
    );
    let last = events_of(&app, &id).await.pop().unwrap().1;
    assert_eq!(last["from_status"], "disputed");
    assert_eq!(last["status"], "resolved");
    let log: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT from_status, to_status FROM booking_transitions WHERE booking_id = $1::uuid ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(log.len(), 7);
    assert_eq!(log[0], (None, "pending_payment".into()));
    assert_eq!(log[6], (Some("disputed".into()), "resolved".into()));

    // Decline releases the unit; a declined booking never shows contacts.
    let d = booked(&app, &p.renter, &body(&listing, day(12, 10), day(13, 10))).await;
    let (status, declined) = act(
        &app,
        &p.owner,
        &d,
        "decline",
        Some(json!({"reason": "under repair"})),
    )
    .await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["status_reason"], "under repair");
    assert_eq!(declined["counterparty"]["contact"], Value::Null);
    let held = count(
        &app,
        &format!(
            "SELECT count(*) FROM availability_windows WHERE booking_id = '{}'",
            d["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(held, 0);
    let (status, _) = act(&app, &p.renter, &d, "cancel", None).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn bookings_cancellation_refunds_follow_the_policy() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let listing = app.active_listing(&p.owner, json!({"quantity": 3})).await;
    // Moderate: ≥ 5 days → full rental refund; ≥ 24 h → half.
    let early = booked(&app, &p.renter, &body(&listing, day(10, 10), day(11, 10))).await;
    let (status, c) = act(&app, &p.renter, &early, "cancel", None).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["refund"]["rental_percent"], 100);
    assert_eq!(c["refund"]["cancelled_by"], "renter");
    assert_eq!(c["refund"]["total"], c["total"]);
    // Contact details stay shared once approved, even after cancelling.
    assert_eq!(c["counterparty"]["contact"]["email"], "owner@example.com");

    let late = booked(&app, &p.renter, &body(&listing, day(3, 10), day(4, 10))).await;
    let (status, c) = act(
        &app,
        &p.renter,
        &late,
        "cancel",
        Some(json!({"reason": "plans changed"})),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["refund"]["rental_percent"], 50);
    assert_eq!(c["refund"]["subtotal"], 1250);
    assert_eq!(c["refund"]["service_fee"], 0);
    assert_eq!(c["refund"]["deposit"], 30000);
    assert_eq!(c["status_reason"], "plans changed");
    let events = events_of(&app, late["id"].as_str().unwrap()).await;
    assert_eq!(events.last().unwrap().0, "booking.cancelled");
    assert_eq!(events.last().unwrap().1["refund"]["rental_percent"], 50);

    // The owner cancelling refunds everything; so does an admin.
    let owner_cancels = booked(&app, &p.renter, &body(&listing, day(3, 10), day(4, 10))).await;
    let (_, c) = act(&app, &p.owner, &owner_cancels, "cancel", None).await;
    assert_eq!(c["refund"]["rental_percent"], 100);
    assert_eq!(c["refund"]["cancelled_by"], "owner");
    let admin_cancels = booked(&app, &p.renter, &body(&listing, day(3, 10), day(4, 10))).await;
    let (status, c) = act(&app, &admin, &admin_cancels, "cancel", None).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["refund"]["cancelled_by"], "admin");
    // Every unit is free again.
    assert_eq!(
        count(&app, "SELECT count(*) FROM availability_windows").await,
        0
    );

    // Transitions are idempotent with a key.
    let b = booked(&app, &p.renter, &body(&listing, day(3, 10), day(4, 10))).await;
    let path = format!("/v1/bookings/{}/cancel", b["id"].as_str().unwrap());
    let send = || {
        app.client
            .post(app.url(&path))
            .bearer_auth(&p.renter)
            .header("Idempotency-Key", "cancel-1")
            .send()
    };
    let (s1, _, first) = parts(send().await.unwrap()).await;
    let (s2, h2, second) = parts(send().await.unwrap()).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(first["refund"], second["refund"]);
}

#[tokio::test]
async fn bookings_lists_paginate_and_filter() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({"quantity": 3})).await;
    let mut ids = Vec::new();
    for d in 0..3 {
        let b = booked(
            &app,
            &p.renter,
            &body(&listing, day(5 + d, 10), day(5 + d, 12)),
        )
        .await;
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    let (status, _) = act(&app, &p.renter, &json!({"id": ids[0]}), "cancel", None).await;
    assert_eq!(status, 200);

    let (status, page) = app
        .call_parts(
            Method::GET,
            "/v1/users/me/bookings?limit=2",
            Some(&p.renter),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    let first: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/me/bookings?limit=2&cursor={cursor}"),
            Some(&p.renter),
            None,
        )
        .await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"][0]["id"], ids[0].as_str());
    assert_eq!(page["next_cursor"], Value::Null);

    let (_, page) = app
        .call_parts(
            Method::GET,
            "/v1/users/me/bookings?status=cancelled",
            Some(&p.renter),
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["status"], "cancelled");

    // The owner sees them as rentals; the renter has none.
    let (_, rentals) = app
        .call_parts(
            Method::GET,
            "/v1/users/me/rentals?status=approved",
            Some(&p.owner),
            None,
        )
        .await;
    assert_eq!(rentals["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        rentals["data"][0]["counterparty"]["contact"]["email"],
        "renter@example.com"
    );
    let (_, none) = app
        .call_parts(Method::GET, "/v1/users/me/rentals", Some(&p.renter), None)
        .await;
    assert_eq!(none["data"], json!([]));

    for bad in ["limit=0", "limit=51", "status=nope", "cursor=garbage"] {
        let (status, _) = app
            .call_parts(
                Method::GET,
                &format!("/v1/users/me/bookings?{bad}"),
                Some(&p.renter),
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn bookings_survive_the_renters_erasure_without_their_personal_data() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": true}))
        .await;
    let booking = booked(&app, &p.renter, &body(&listing, day(3, 10), day(4, 10))).await;
    let id = booking["id"].as_str().unwrap();
    let (status, seen) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}"),
            Some(&p.owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["counterparty"]["contact"]["email"], "renter@example.com",
        "an approved booking shares contact details: {seen}"
    );

    let erased = app
        .call(Method::DELETE, "/v1/users/me", Some(&p.renter), None)
        .await;
    assert_eq!(erased.status().as_u16(), 204);

    // The booking (and its price and history) stays; the renter's personal
    // data does not come back through it.
    let (status, seen) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}"),
            Some(&p.owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["status"], "approved");
    assert_eq!(seen["renter_id"], p.renter_id.as_str());
    assert_eq!(seen["total"], booking["total"]);
    assert!(seen["counterparty"]["contact"].is_null(), "{seen}");
    assert!(!seen.to_string().contains("renter@example.com"), "{seen}");
    // The owner can still run the booking to its end.
    let (status, started) = act(&app, &p.owner, &booking, "start", None).await;
    assert_eq!(status, 200, "{started}");
}
