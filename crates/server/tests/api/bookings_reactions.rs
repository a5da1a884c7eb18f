//! The reactions to booking events (seed 000 "Booking Lifecycle Events"),
//! each driven by its transition over HTTP and checked by its effect: the
//! people notified (through the notifications consumer), the money moved
//! (through the payments tasks of the transition), the units released or
//! taken, the timers armed, the support case opened.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    bookings::{act, body, book, booked, count, day, parties},
    payments_bookings::{intent_of, owner_wallet, settled, transactions},
    payments_wallet::eventually,
    support::TestApp,
};

/// The caller's notifications of `kind`, newest first.
async fn notifications_of(app: &TestApp, token: &str, kind: &str) -> Vec<Value> {
    let (status, list) = app
        .call_parts(Method::GET, "/v1/notifications?limit=50", Some(token), None)
        .await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == kind)
        .cloned()
        .collect()
}

/// Waits for the caller's notification of `kind` about `booking`.
async fn notified(app: &TestApp, token: &str, kind: &str, booking: &Value) -> Value {
    let id = booking["id"].clone();
    eventually(&format!("a {kind} notification"), || {
        let id = id.clone();
        async move {
            notifications_of(app, token, kind)
                .await
                .into_iter()
                .find(|n| n["data"]["booking_id"] == id)
        }
    })
    .await
}

/// Lets the consumers catch up, then checks `token` has no notification
/// of `kind`.
async fn not_notified(app: &TestApp, token: &str, kind: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        notifications_of(app, token, kind).await.is_empty(),
        "unexpected {kind} notification"
    );
}

fn id(booking: &Value) -> &str {
    booking["id"].as_str().unwrap()
}

async fn booked_units(app: &TestApp, booking: &Value) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) FROM availability_windows WHERE booking_id = '{}' AND status = 'booked'",
            id(booking)
        ),
    )
    .await
}

#[tokio::test]
async fn reactions_requested_notifies_the_owner_and_arms_the_approval_timer() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let r = booked(&app, &p.renter, &body(&listing, day(10, 10), day(11, 10))).await;
    assert_eq!(r["status"], "requested");
    let note = notified(&app, &p.owner, "booking.requested", &r).await;
    assert_eq!(note["category"], "bookings");
    assert!(!note["title"].as_str().unwrap().is_empty());
    // The 24 h approval timer is a durable job due at the deadline.
    let due: i64 = count(
        &app,
        &format!(
            "SELECT count(*) FROM underway.task
              WHERE task_queue_name = 'bookings.approval_timeout'
                AND input::text LIKE '%{}%'
                AND created_at + delay BETWEEN now() + interval '23 hours' AND now() + interval '24 hours'",
            id(&r)
        ),
    )
    .await;
    assert_eq!(due, 1, "one approval timer, due in 24 h");
    not_notified(&app, &p.renter, "booking.requested").await;
}

#[tokio::test]
async fn reactions_approved_charges_confirms_and_notifies_the_renter() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let r = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let (status, approved) = act(&app, &p.owner, &r, "approve", None).await;
    assert_eq!(status, 200, "{approved}");
    // Confirmed: the dates are held and the parties see each other.
    assert_eq!(approved["status"], "approved");
    assert_eq!(
        approved["counterparty"]["contact"]["email"],
        "renter@example.com"
    );
    assert_eq!(booked_units(&app, &r).await, 1);
    // Charged: the renter's card holds the rental and the deposit.
    assert_eq!(
        transactions(&app, &p.renter, &r).await,
        [
            ("charge".into(), 5_500, "pending".into()),
            ("deposit_hold".into(), 30_000, "pending".into())
        ]
    );
    assert_eq!(intent_of(&app, &r).await.1, "authorized");
    notified(&app, &p.renter, "booking.approved", &r).await;
}

#[tokio::test]
async fn reactions_declined_notifies_the_renter_and_releases_the_dates() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let request = body(&listing, day(10, 10), day(12, 10));
    let r = booked(&app, &p.renter, &request).await;
    let (status, declined) = act(&app, &p.owner, &r, "decline", None).await;
    assert_eq!(status, 200, "{declined}");
    notified(&app, &p.renter, "booking.declined", &r).await;
    assert_eq!(booked_units(&app, &r).await, 0, "the unit is released");
    settled(&app).await;
    assert_eq!(intent_of(&app, &r).await.1, "voided", "the hold is voided");
    // Someone else can now book those dates.
    let (_, other) = app.renter("other@example.com").await;
    let (status, _, again) = book(&app, &other, Some("other"), &request).await;
    assert_eq!(status, 201, "{again}");
}

#[tokio::test]
async fn reactions_cancelled_refunds_releases_and_notifies_both_parties() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(20, 10), day(22, 10))).await;
    let (status, cancelled) = act(&app, &p.renter, &b, "cancel", None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(booked_units(&app, &b).await, 0, "the unit is released");
    let to_owner = notified(&app, &p.owner, "booking.cancelled", &b).await;
    let to_renter = notified(&app, &p.renter, "booking.cancelled", &b).await;
    assert_eq!(to_owner["critical"], true);
    assert_eq!(to_renter["critical"], true);
    // Far enough ahead for a full refund: nothing is kept, the hold goes.
    settled(&app).await;
    let (_, intent_status, captured) = intent_of(&app, &b).await;
    assert_eq!((intent_status.as_str(), captured), ("voided", 0));
    assert_eq!(
        cancelled["refund"]["total"], cancelled["total"],
        "{cancelled}"
    );
}

#[tokio::test]
async fn reactions_started_captures_the_payment() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    settled(&app).await;
    let (_, status, captured) = intent_of(&app, &b).await;
    assert_eq!((status.as_str(), captured), ("captured", 35_500));
    notified(&app, &p.renter, "booking.started", &b).await;
}

#[tokio::test]
async fn reactions_completed_pays_the_owner_and_prompts_reviews_a_day_later() {
    let app = TestApp::builder()
        .env("NOTIFICATIONS_REVIEW_PROMPT_DELAY_SECS", "3")
        .spawn()
        .await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    assert_eq!(act(&app, &p.owner, &b, "complete", None).await.0, 200);
    notified(&app, &p.owner, "booking.completed", &b).await;
    notified(&app, &p.renter, "booking.completed", &b).await;
    // The payout: 50.00 rental less the 3 % commission reaches the owner.
    settled(&app).await;
    assert_eq!(owner_wallet(&app, &p.owner).await["balance"], 4_850);
    // The review prompt waits for its delay, then reaches both parties.
    assert!(
        notifications_of(&app, &p.renter, "review_prompt")
            .await
            .is_empty()
    );
    notified(&app, &p.renter, "review_prompt", &b).await;
    notified(&app, &p.owner, "review_prompt", &b).await;
}

#[tokio::test]
async fn reactions_disputed_pauses_the_payout_and_opens_a_support_case() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    let (status, _) = act(
        &app,
        &p.renter,
        &b,
        "dispute",
        Some(json!({"reason": "scratched lens"})),
    )
    .await;
    assert_eq!(status, 200);
    let path = format!("/v1/admin/support-cases?booking_id={}", id(&b));
    let case = eventually("a support case", || async {
        let (status, list) = app.call_parts(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(status, 200, "{list}");
        list["data"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(case["object"], "support_case");
    assert_eq!(case["kind"], "dispute");
    assert_eq!(case["status"], "open");
    assert_eq!(case["opened_by"], p.renter_id.as_str());
    assert_eq!(case["reason"], "scratched lens");
    notified(&app, &p.owner, "booking.disputed", &b).await;
    // The payout waits for the resolution.
    settled(&app).await;
    assert_eq!(owner_wallet(&app, &p.owner).await["balance"], 0);
    // Support cases are for admins only.
    let (status, _) = app
        .call_parts(Method::GET, &path, Some(&p.renter), None)
        .await;
    assert_eq!(status, 403);

    let (status, resolved) = act(
        &app,
        &admin,
        &b,
        "resolve",
        Some(json!({"resolution": "release"})),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    eventually("the case to close", || async {
        let (_, list) = app.call_parts(Method::GET, &path, Some(&admin), None).await;
        (list["data"][0]["status"] == "closed").then_some(())
    })
    .await;
    settled(&app).await;
    assert_eq!(owner_wallet(&app, &p.owner).await["balance"], 4_850);
    let cases = count(&app, "SELECT count(*) FROM support_cases").await;
    assert_eq!(cases, 1, "one case per dispute");
}

#[tokio::test]
async fn reactions_extended_charges_the_delta_and_takes_the_extra_time() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    let response = app
        .client
        .post(app.url(&format!("/v1/bookings/{}/extend", id(&b))))
        .bearer_auth(&p.renter)
        .header("Idempotency-Key", "one-more-day")
        .json(&json!({"end_time": day(13, 10).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let child: Value = response.json().await.unwrap();
    // The delta is charged and the extra day is held.
    assert_eq!(
        transactions(&app, &p.renter, &child).await,
        [("charge".into(), 2_750, "pending".into())]
    );
    assert_eq!(booked_units(&app, &child).await, 1);
    let (_, other) = app.renter("other@example.com").await;
    let (status, _, _) = book(
        &app,
        &other,
        Some("overlap"),
        &body(&listing, day(12, 12), day(13, 8)),
    )
    .await;
    assert_eq!(status, 409, "the extension's time is taken");
    notified(&app, &p.owner, "booking.extended", &b).await;
}
