//! The approval timer (with a job worker, and inline when the worker is
//! late) and extensions.

use std::time::Duration as StdDuration;

use rentify_bookings::BookingJobs;
use rentify_platform::jobs::Workers;
use serde_json::json;

use crate::{
    bookings::{act, body, book, booked, count, day, events_of, parties},
    support::{TestApp, error_code, parts},
};

/// `POST /v1/bookings/{id}/extend` to `end` with `key` as `Idempotency-Key`.
async fn extend(
    app: &TestApp,
    token: &str,
    target: &serde_json::Value,
    end: chrono::DateTime<chrono::Utc>,
    key: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let path = format!("/v1/bookings/{}/extend", target["id"].as_str().unwrap());
    let request = app
        .client
        .post(app.url(&path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"end_time": end.to_rfc3339()}));
    parts(request.send().await.unwrap()).await
}

async fn status_of(app: &TestApp, id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_reason FROM bookings WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn bookings_unanswered_requests_are_declined_by_the_approval_timer() {
    let app = TestApp::builder()
        .env("BOOKING_APPROVAL_WINDOW_SECS", "1")
        .spawn()
        .await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let request = body(&listing, day(5, 10), day(5, 12));
    let b = booked(&app, &p.renter, &request).await;
    let id = b["id"].as_str().unwrap();
    assert_eq!(b["status"], "requested");

    let jobs = BookingJobs::build(app.db.clone(), app.modules.payments.jobs().clone())
        .await
        .unwrap();
    let mut workers = Workers::new(2, StdDuration::from_millis(100));
    jobs.spawn(&mut workers);
    let mut declined = false;
    for _ in 0..100 {
        if status_of(&app, id).await.0 == "declined" {
            declined = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    workers.shutdown(StdDuration::from_secs(5)).await;
    assert!(declined, "the timer declined the request");
    assert_eq!(
        status_of(&app, id).await,
        ("declined".into(), Some("approval_timeout".into()))
    );
    let events = events_of(&app, id).await;
    assert_eq!(events.last().unwrap().0, "booking.declined");
    assert_eq!(events.last().unwrap().1["reason"], "approval_timeout");
    assert_eq!(
        events.last().unwrap().1["actor_id"],
        serde_json::Value::Null
    );
    let actor: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT actor_id FROM booking_transitions WHERE booking_id = $1::uuid AND to_status = 'declined'",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(actor, None);
    // The slot is free again; the owner can no longer approve.
    assert_eq!(
        count(&app, "SELECT count(*) FROM availability_windows").await,
        0
    );
    let (status, error) = act(&app, &p.owner, &b, "approve", None).await;
    assert_eq!((status, error_code(&error)), (409, "invalid_transition"));
    let again = booked(&app, &p.renter, &request).await;
    assert_eq!(again["status"], "requested");
}

#[tokio::test]
async fn bookings_an_expired_request_never_blocks_a_new_booking_even_without_a_worker() {
    let app = TestApp::builder()
        .env("BOOKING_APPROVAL_WINDOW_SECS", "1")
        .spawn()
        .await;
    let p = parties(&app).await;
    let (_, second) = app.renter("second@example.com").await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let request = body(&listing, day(5, 10), day(5, 12));
    let first = booked(&app, &p.renter, &request).await;
    // While the request is pending, it holds the slot.
    let (status, _, error) = book(&app, &second, Some("early"), &request).await;
    assert_eq!((status, error_code(&error)), (409, "booking_conflict"));
    let quote = |token: String| {
        let request = request.clone();
        let app = &app;
        async move {
            let (status, _, quote) = parts(
                app.post_json(
                    "/v1/bookings/quote",
                    &request,
                    &[("Authorization", &format!("Bearer {token}"))],
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "{quote}");
            quote["available"].as_bool().unwrap()
        }
    };
    assert!(
        !quote(second.clone()).await,
        "a pending request holds the slot"
    );
    tokio::time::sleep(StdDuration::from_millis(1300)).await;
    // Once its hold lapsed, the quote already says the slot is free.
    assert!(quote(second.clone()).await, "a lapsed hold gives way");
    let (status, _, taken) = book(&app, &second, Some("late"), &request).await;
    assert_eq!(status, 201, "{taken}");
    assert_eq!(
        status_of(&app, first["id"].as_str().unwrap()).await,
        ("declined".into(), Some("approval_timeout".into()))
    );
    // The timer, when it finally runs, leaves the declined request alone.
    let jobs = BookingJobs::build(app.db.clone(), app.modules.payments.jobs().clone())
        .await
        .unwrap();
    let mut workers = Workers::new(2, StdDuration::from_millis(100));
    jobs.spawn(&mut workers);
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    workers.shutdown(StdDuration::from_secs(5)).await;
    let declines = count(
        &app,
        &format!(
            "SELECT count(*) FROM events WHERE type = 'booking.declined' AND aggregate_id = '{}'",
            first["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(declines, 1);
}

#[tokio::test]
async fn bookings_extensions_create_a_child_booking_on_the_same_unit() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, other) = app.renter("other@example.com").await;
    let listing = app
        .active_listing(
            &p.owner,
            json!({"quantity": 1, "booking_rules": {"buffer_minutes": 30}}),
        )
        .await;
    let parent = booked(&app, &p.renter, &body(&listing, day(5, 10), day(5, 12))).await;
    booked(&app, &other, &body(&listing, day(5, 14), day(5, 16))).await;
    // Only the renter extends; the end must move forward.
    let (status, _, _) = extend(&app, &p.owner, &parent, day(5, 13), "e0").await;
    assert_eq!(status, 403);
    let (status, _, error) = extend(&app, &p.renter, &parent, day(5, 11), "e1").await;
    assert_eq!((status, error_code(&error)), (400, "validation_failed"));

    let (status, _, child) = extend(&app, &p.renter, &parent, day(5, 13), "e2").await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["parent_id"], parent["id"]);
    assert_eq!(child["unit"], parent["unit"]);
    assert_eq!(child["start_time"], parent["end_time"]);
    assert_eq!(child["status"], "approved");
    assert_eq!(child["deposit"], 0);
    assert_eq!(child["subtotal"], 500);
    let events = events_of(&app, parent["id"].as_str().unwrap()).await;
    assert_eq!(events.last().unwrap().0, "booking.extended");
    assert_eq!(events.last().unwrap().1["child_booking_id"], child["id"]);

    // 13:00 + 30 min buffer .. 16:00 overlaps the other renter's booking.
    let (status, _, error) = extend(&app, &p.renter, &child, day(5, 15), "e3").await;
    assert_eq!((status, error_code(&error)), (409, "booking_conflict"));
    // The failed extension left nothing behind.
    assert_eq!(count(&app, "SELECT count(*) FROM bookings").await, 3);
    // A cancelled booking cannot be extended.
    let (status, _) = act(&app, &p.renter, &child, "cancel", None).await;
    assert_eq!(status, 200);
    let (status, _, error) = extend(
        &app,
        &p.renter,
        &child,
        day(5, 13) + chrono::Duration::minutes(20),
        "e4",
    )
    .await;
    assert_eq!((status, error_code(&error)), (409, "invalid_transition"));
    assert_eq!(error["error"]["details"][0]["current_status"], "cancelled");
}

#[tokio::test]
async fn bookings_extensions_keep_the_whole_rental_within_the_longest_duration() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(
            &p.owner,
            json!({"booking_rules": {"max_duration_minutes": 240}}),
        )
        .await;
    let parent = booked(&app, &p.renter, &body(&listing, day(6, 10), day(6, 12))).await;
    // 10:00 → 13:00 is 3 hours in all: fine.
    let (status, _, child) = extend(&app, &p.renter, &parent, day(6, 13), "x1").await;
    assert_eq!(status, 201, "{child}");
    // Extending the extension to 15:00 makes 5 hours from the first start.
    let (status, _, error) = extend(&app, &p.renter, &child, day(6, 15), "x2").await;
    assert_eq!(
        (status, error_code(&error)),
        (400, "booking_rule_violated"),
        "{error}"
    );
    assert_eq!(
        error["error"]["details"][0]["rule"], "max_duration",
        "{error}"
    );
    // Up to 14:00 (4 hours in all) is allowed.
    let (status, _, grandchild) = extend(&app, &p.renter, &child, day(6, 14), "x3").await;
    assert_eq!(status, 201, "{grandchild}");
    assert_eq!(grandchild["parent_id"], child["id"]);
}
