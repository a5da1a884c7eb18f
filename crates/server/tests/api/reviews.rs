//! Reviews and trust over HTTP (issue 7): reviews after a completed
//! booking by either party, the double blind and the window that lifts it,
//! edits, moderation, the rating aggregate kept by the `review_ratings`
//! consumer, and the trust score kept by the `trust` consumer.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    bookings::{Parties, act, body, booked, day, parties},
    payments_wallet::eventually,
    support::{TestApp, error_code, parts},
};

/// A booking of a fresh request-only listing of `p.owner` from `days`
/// ahead, requested, approved by the owner, started and completed.
async fn completed_booking(app: &TestApp, p: &Parties, days: i64) -> Value {
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let b = booked(
        app,
        &p.renter,
        &body(&listing, day(days, 10), day(days + 2, 10)),
    )
    .await;
    assert_eq!(b["status"], "requested", "{b}");
    for action in ["approve", "start", "complete"] {
        let (status, after) = act(app, &p.owner, &b, action, None).await;
        assert_eq!(status, 200, "{action}: {after}");
    }
    b
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

/// `POST /v1/bookings/{id}/reviews` as `token`.
async fn review(app: &TestApp, token: &str, booking: &Value, body: Value) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        &format!("/v1/bookings/{}/reviews", id(booking)),
        Some(token),
        Some(&body),
    )
    .await
}

/// A review that must be accepted.
async fn reviewed(app: &TestApp, token: &str, booking: &Value, body: Value) -> Value {
    let (status, review) = review(app, token, booking, body).await;
    assert_eq!(status, 201, "{review}");
    review
}

/// The booking's reviews as `token` sees them.
async fn booking_reviews(app: &TestApp, token: &str, booking: &Value) -> Vec<Value> {
    let (status, list) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{}/reviews", id(booking)),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    list["data"].as_array().unwrap().clone()
}

/// `GET /v1/users/{user_id}/reviews`, without credentials.
async fn public_reviews(app: &TestApp, user_id: &str) -> Vec<Value> {
    let (status, list) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/{user_id}/reviews"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

/// The payloads of the outbox events of `event_type`, oldest first.
async fn events(app: &TestApp, event_type: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM events WHERE type = $1 ORDER BY position")
        .bind(event_type)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn patch(
    app: &TestApp,
    token: &str,
    review: &Value,
    if_match: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = app
        .client
        .patch(app.url(&format!("/v1/reviews/{}", id(review))))
        .bearer_auth(token)
        .json(&body);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    parts(request.send().await.unwrap()).await
}

/// The first validation detail's field of a 400.
fn invalid_field(status: u16, body: &Value) -> String {
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(body), "validation_failed");
    body["error"]["details"][0]["field"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn reviews_both_parties_review_a_completed_booking_under_a_double_blind() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let b = completed_booking(&app, &p, 10).await;

    let response = app
        .client
        .post(app.url(&format!("/v1/bookings/{}/reviews", id(&b))))
        .bearer_auth(&p.renter)
        .json(&json!({"rating": 5, "comment": "  Spotless camera, friendly owner.  "}))
        .send()
        .await
        .unwrap();
    let (status, headers, first) = parts(response).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(first["object"], "review");
    assert_eq!(first["booking_id"], id(&b));
    assert_eq!(first["listing_id"], b["listing_id"]);
    assert_eq!(first["author_id"], p.renter_id.as_str());
    assert_eq!(first["target_id"], p.owner_id.as_str());
    assert_eq!(first["author_role"], "renter");
    assert_eq!(first["rating"], 5);
    assert_eq!(first["comment"], "Spotless camera, friendly owner.");
    assert_eq!(first["status"], "published");
    assert_eq!(first["moderation_flags"], json!([]));
    // Sealed: the owner, the public and the owner's profile cannot see it.
    assert_eq!(first["visible"], false);
    assert_eq!(first["visible_at"], Value::Null);
    assert_eq!(booking_reviews(&app, &p.renter, &b).await.len(), 1);
    assert!(booking_reviews(&app, &p.owner, &b).await.is_empty());
    assert!(public_reviews(&app, &p.owner_id).await.is_empty());
    let path = format!("/v1/reviews/{}", id(&first));
    let (status, _) = app
        .call_parts(Method::GET, &path, Some(&p.owner), None)
        .await;
    assert_eq!(status, 404, "the target cannot read a sealed review");
    let (status, own) = app
        .call_parts(Method::GET, &path, Some(&p.renter), None)
        .await;
    assert_eq!((status, &own["id"]), (200, &first["id"]));
    let submitted = events(&app, "review.submitted").await;
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0]["review_id"], first["id"]);
    assert_eq!(submitted[0]["target_id"], p.owner_id.as_str());
    assert_eq!(submitted[0]["visible"], false);
    // The window timer is armed in the review's transaction.
    let timers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM underway.task WHERE task_queue_name = 'reviews.reveal'
           AND input::text LIKE $1",
    )
    .bind(format!("%{}%", id(&b)))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(timers, 1);

    // The second review lifts the blind on both, in one transaction.
    let second = reviewed(&app, &p.owner, &b, json!({"rating": 4})).await;
    assert_eq!(second["author_role"], "owner");
    assert_eq!(second["target_id"], p.renter_id.as_str());
    assert_eq!(second["comment"], Value::Null);
    assert_eq!(second["visible"], true);
    let seen_by_owner = booking_reviews(&app, &p.owner, &b).await;
    assert_eq!(seen_by_owner.len(), 2);
    let renters = seen_by_owner
        .iter()
        .find(|r| r["author_role"] == "renter")
        .unwrap();
    assert_eq!(renters["visible"], true);
    assert_eq!(renters["visible_at"], second["visible_at"]);
    // The public does not see the moderation record.
    assert_eq!(renters["moderation_flags"], Value::Null);
    let about_owner = public_reviews(&app, &p.owner_id).await;
    assert_eq!(about_owner.len(), 1);
    assert_eq!(about_owner[0]["rating"], 5);
    let about_renter = public_reviews(&app, &p.renter_id).await;
    assert_eq!(about_renter.len(), 1);
    assert_eq!(about_renter[0]["rating"], 4);
    let revealed = events(&app, "review.revealed").await;
    assert_eq!(revealed.len(), 2);
    assert!(revealed.iter().all(|e| e["visible"] == true));
    // Anyone may read a public review, without credentials.
    let (status, public) = app.call_parts(Method::GET, &path, None, None).await;
    assert_eq!((status, public["rating"].clone()), (200, json!(5)));
    // An unknown user has no reviews page.
    let (status, _) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/{}/reviews", uuid::Uuid::now_v7()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn reviews_need_a_completed_booking_a_party_and_one_review_each() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, stranger) = app.user("stranger@example.com").await;
    let (_, admin) = app.admin("admin@example.com").await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let rating = json!({"rating": 4});
    for (action, status) in [
        (None, "requested"),
        (Some("approve"), "approved"),
        (Some("start"), "active"),
    ] {
        if let Some(action) = action {
            assert_eq!(act(&app, &p.owner, &b, action, None).await.0, 200);
        }
        let (code, error) = review(&app, &p.renter, &b, rating.clone()).await;
        assert_eq!(code, 409, "{error}");
        assert_eq!(error_code(&error), "booking_not_completed");
        assert_eq!(error["error"]["details"][0]["current_status"], status);
    }
    assert_eq!(act(&app, &p.owner, &b, "complete", None).await.0, 200);
    // Not a party: as if the booking did not exist, for admins too.
    for token in [&stranger, &admin] {
        let (code, error) = review(&app, token, &b, rating.clone()).await;
        assert_eq!(code, 404, "{error}");
        assert_eq!(error_code(&error), "not_found");
    }
    let (code, _) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{}/reviews", id(&b)),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) = review(
        &app,
        &p.renter,
        &json!({"id": uuid::Uuid::now_v7()}),
        rating.clone(),
    )
    .await;
    assert_eq!(code, 404);
    // Without credentials: 401.
    let (code, _) = app
        .call_parts(
            Method::POST,
            &format!("/v1/bookings/{}/reviews", id(&b)),
            None,
            Some(&rating),
        )
        .await;
    assert_eq!(code, 401);

    reviewed(&app, &p.renter, &b, rating.clone()).await;
    let (code, error) = review(&app, &p.renter, &b, json!({"rating": 1})).await;
    assert_eq!(code, 409, "{error}");
    assert_eq!(error_code(&error), "review_exists");
    // A retry with the same Idempotency-Key replays the first answer.
    let send = || {
        app.client
            .post(app.url(&format!("/v1/bookings/{}/reviews", id(&b))))
            .bearer_auth(&p.owner)
            .header("Idempotency-Key", "owner-review-1")
            .json(&json!({"rating": 5, "comment": "Careful renter"}))
            .send()
    };
    let (status, _, first) = parts(send().await.unwrap()).await;
    assert_eq!(status, 201, "{first}");
    let (status, headers, again) = parts(send().await.unwrap()).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], first["id"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM reviews WHERE booking_id = $1::uuid")
        .bind(id(&b))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn reviews_are_refused_once_the_window_closed() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let b = completed_booking(&app, &p, 10).await;
    // Completed 15 days ago: past the 14-day window.
    sqlx::query("UPDATE bookings SET updated_at = now() - interval '15 days' WHERE id = $1::uuid")
        .bind(id(&b))
        .execute(&app.db)
        .await
        .unwrap();
    let (status, error) = review(&app, &p.renter, &b, json!({"rating": 5})).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error_code(&error), "review_window_closed");
    assert!(error["error"]["details"][0]["closed_at"].is_string());
    // 13 days ago: still open, and it closes a day from now.
    sqlx::query("UPDATE bookings SET updated_at = now() - interval '13 days' WHERE id = $1::uuid")
        .bind(id(&b))
        .execute(&app.db)
        .await
        .unwrap();
    let review = reviewed(&app, &p.renter, &b, json!({"rating": 5})).await;
    let closes: chrono::DateTime<chrono::Utc> = review["window_closes_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = closes - chrono::Utc::now();
    assert!(
        left > chrono::Duration::hours(23) && left <= chrono::Duration::hours(24),
        "{left}"
    );
}

#[tokio::test]
async fn reviews_a_lone_review_is_revealed_when_the_window_closes() {
    let app = TestApp::builder()
        .env("REVIEWS_WINDOW_SECS", "8")
        .spawn()
        .await;
    let p = parties(&app).await;
    let b = completed_booking(&app, &p, 10).await;
    let lone = reviewed(
        &app,
        &p.renter,
        &b,
        json!({"rating": 2, "comment": "Late at pickup."}),
    )
    .await;
    assert_eq!(lone["visible"], false);
    assert!(booking_reviews(&app, &p.owner, &b).await.is_empty());
    // The `reviews.reveal` job unseals it when the window closes.
    let shown = eventually("the lone review revealed", || async {
        public_reviews(&app, &p.owner_id).await.into_iter().next()
    })
    .await;
    assert_eq!(shown["id"], lone["id"]);
    assert_eq!(shown["visible"], true);
    let revealed = events(&app, "review.revealed").await;
    assert_eq!(revealed.len(), 1);
    assert_eq!(revealed[0]["review_id"], lone["id"]);
    assert_eq!(booking_reviews(&app, &p.owner, &b).await.len(), 1);
    // Too late for the other party now.
    let (status, error) = review(&app, &p.owner, &b, json!({"rating": 5})).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error_code(&error), "review_window_closed");
}

#[tokio::test]
async fn reviews_can_be_edited_for_48_hours_while_sealed() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let b = completed_booking(&app, &p, 10).await;
    let mine = reviewed(
        &app,
        &p.renter,
        &b,
        json!({"rating": 3, "comment": "Fine."}),
    )
    .await;
    assert_eq!(mine["version"], 1);

    let (status, headers, edited) = patch(
        &app,
        &p.renter,
        &mine,
        Some("\"1\""),
        json!({"rating": 4, "comment": "Fine, and the owner was quick."}),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(edited["rating"], 4);
    assert_eq!(edited["comment"], "Fine, and the owner was quick.");
    assert_eq!(edited["version"], 2);
    let updated = events(&app, "review.updated").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["rating"], 4);
    // A stale ETag is refused.
    let (status, _, stale) =
        patch(&app, &p.renter, &mine, Some("\"1\""), json!({"rating": 5})).await;
    assert_eq!(status, 412, "{stale}");
    assert_eq!(error_code(&stale), "precondition_failed");
    // `null` removes the comment.
    let (status, _, cleared) = patch(&app, &p.renter, &mine, None, json!({"comment": null})).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["comment"], Value::Null);
    // Someone else's review is not theirs to edit.
    let (status, _, _) = patch(&app, &p.owner, &mine, None, json!({"rating": 1})).await;
    assert_eq!(status, 404);
    // 48 hours later it is locked.
    sqlx::query(
        "UPDATE reviews SET editable_until = now() - interval '1 minute' WHERE id = $1::uuid",
    )
    .bind(id(&mine))
    .execute(&app.db)
    .await
    .unwrap();
    let (status, _, locked) = patch(&app, &p.renter, &mine, None, json!({"rating": 5})).await;
    assert_eq!(status, 409, "{locked}");
    assert_eq!(error_code(&locked), "review_locked");
    assert_eq!(
        locked["error"]["details"][0]["reason"],
        "edit_window_passed"
    );
    // Once the other party can read a review, it is locked too.
    let theirs = reviewed(&app, &p.owner, &b, json!({"rating": 5})).await;
    let (status, _, locked) = patch(&app, &p.owner, &theirs, None, json!({"rating": 1})).await;
    assert_eq!(status, 409, "{locked}");
    assert_eq!(locked["error"]["details"][0]["reason"], "revealed");
    let (_, stored) = app
        .call_parts(
            Method::GET,
            &format!("/v1/reviews/{}", id(&theirs)),
            None,
            None,
        )
        .await;
    assert_eq!(stored["rating"], 5, "the locked review is unchanged");
}

#[tokio::test]
async fn reviews_moderation_holds_contact_details_and_profanity_for_an_admin() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let b = completed_booking(&app, &p, 10).await;
    let held = reviewed(
        &app,
        &p.renter,
        &b,
        json!({"rating": 5, "comment": "Next time book directly at www.cheap-cams.example or call 06 12 34 56 78"}),
    )
    .await;
    assert_eq!(held["status"], "pending");
    assert_eq!(held["moderation_flags"], json!(["link", "phone_number"]));
    // The owner's review lifts the blind, but a held review stays hidden.
    reviewed(&app, &p.owner, &b, json!({"rating": 5})).await;
    assert_eq!(booking_reviews(&app, &p.owner, &b).await.len(), 1);
    assert!(public_reviews(&app, &p.owner_id).await.is_empty());

    // The queue is for admins.
    let (status, _) = app
        .call_parts(Method::GET, "/v1/admin/reviews", Some(&p.owner), None)
        .await;
    assert_eq!(status, 403);
    let (status, queue) = app
        .call_parts(Method::GET, "/v1/admin/reviews", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{queue}");
    let queued = queue["data"].as_array().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["id"], held["id"]);
    assert_eq!(
        queued[0]["moderation_flags"],
        json!(["link", "phone_number"])
    );

    let approve = format!("/v1/admin/reviews/{}/approve", id(&held));
    let (status, approved) = app
        .call_parts(Method::POST, &approve, Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "published");
    assert_eq!(approved["visible"], true);
    let (status, again) = app
        .call_parts(Method::POST, &approve, Some(&admin), None)
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(error_code(&again), "invalid_transition");
    assert_eq!(again["error"]["details"][0]["current_status"], "published");
    let approvals = events(&app, "review.approved").await;
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["visible"], true);
    assert_eq!(public_reviews(&app, &p.owner_id).await.len(), 1);
    // Approved and visible: now it counts.
    let profile = eventually("the approved review counted", || async {
        let (_, profile) = app
            .call_parts(
                Method::GET,
                &format!("/v1/users/{}", p.owner_id),
                None,
                None,
            )
            .await;
        (profile["rating_summary"]["count"] == 1).then_some(profile)
    })
    .await;
    assert_eq!(profile["rating_summary"]["avg"], 5.0);

    // The reject path, on the parties' next booking.
    let b2 = completed_booking(&app, &p, 20).await;
    let rude = reviewed(
        &app,
        &p.renter,
        &b2,
        json!({"rating": 1, "comment": "What a shit camera."}),
    )
    .await;
    assert_eq!(rude["status"], "pending");
    assert_eq!(rude["moderation_flags"], json!(["profanity"]));
    let reject = format!("/v1/admin/reviews/{}/reject", id(&rude));
    let (status, error) = app
        .call_parts(
            Method::POST,
            &reject,
            Some(&admin),
            Some(&json!({"reason": "  "})),
        )
        .await;
    assert_eq!(invalid_field(status, &error), "reason");
    let (status, rejected) = app
        .call_parts(
            Method::POST,
            &reject,
            Some(&admin),
            Some(&json!({"reason": "Offensive language"})),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["rejection_reason"], "Offensive language");
    let rejections = events(&app, "review.rejected").await;
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["reason"], "Offensive language");
    let (status, listed) = app
        .call_parts(
            Method::GET,
            "/v1/admin/reviews?status=rejected",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], rude["id"]);
    // The author sees why; the review is final.
    let (_, own) = app
        .call_parts(
            Method::GET,
            &format!("/v1/reviews/{}", id(&rude)),
            Some(&p.renter),
            None,
        )
        .await;
    assert_eq!(own["rejection_reason"], "Offensive language");
    let (status, _, locked) = patch(&app, &p.renter, &rude, None, json!({"comment": "Meh."})).await;
    assert_eq!(status, 409, "{locked}");
    assert_eq!(locked["error"]["details"][0]["reason"], "rejected");
    // Rejected reviews are never shown nor counted, even once revealed.
    reviewed(&app, &p.owner, &b2, json!({"rating": 4})).await;
    assert_eq!(public_reviews(&app, &p.owner_id).await.len(), 1);
}

#[tokio::test]
async fn reviews_ratings_are_aggregated_into_the_profile_and_announced() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let b = completed_booking(&app, &p, 10).await;
    reviewed(&app, &p.renter, &b, json!({"rating": 5})).await;
    // Sealed reviews do not count.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, profile) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/{}", p.owner_id),
            None,
            None,
        )
        .await;
    assert_eq!(profile["rating_summary"], json!({"avg": null, "count": 0}));
    reviewed(&app, &p.owner, &b, json!({"rating": 3})).await;
    let summary_of = |user: String| {
        let app = &app;
        async move {
            let (status, profile) = app
                .call_parts(Method::GET, &format!("/v1/users/{user}"), None, None)
                .await;
            assert_eq!(status, 200, "{profile}");
            profile["rating_summary"].clone()
        }
    };
    // Both revealed: each counts for the other party.
    let first = eventually("the owner's first rating", || async {
        let s = summary_of(p.owner_id.clone()).await;
        (s["count"] == 1).then_some(s)
    })
    .await;
    assert_eq!(first, json!({"avg": 5.0, "count": 1}));

    let b2 = completed_booking(&app, &p, 20).await;
    reviewed(&app, &p.renter, &b2, json!({"rating": 4})).await;
    reviewed(&app, &p.owner, &b2, json!({"rating": 4})).await;
    let owner = eventually("the owner's rating", || async {
        let s = summary_of(p.owner_id.clone()).await;
        (s["count"] == 2).then_some(s)
    })
    .await;
    assert_eq!(owner, json!({"avg": 4.5, "count": 2}));
    let renter = eventually("the renter's rating", || async {
        let s = summary_of(p.renter_id.clone()).await;
        (s["count"] == 2).then_some(s)
    })
    .await;
    assert_eq!(renter, json!({"avg": 3.5, "count": 2}));
    // Each change was announced for the search index and the trust score.
    let announced: Vec<Value> = events(&app, "user.rating_updated")
        .await
        .into_iter()
        .filter(|e| e["user_id"] == p.owner_id.as_str())
        .collect();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert_eq!(
        announced[0],
        json!({"user_id": p.owner_id, "avg": 5.0, "count": 1})
    );
    assert_eq!(
        announced[1],
        json!({"user_id": p.owner_id, "avg": 4.5, "count": 2})
    );
}

#[tokio::test]
async fn reviews_trust_scores_follow_the_signals_and_are_for_admins() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let b = completed_booking(&app, &p, 10).await;
    reviewed(&app, &p.renter, &b, json!({"rating": 5})).await;
    reviewed(&app, &p.owner, &b, json!({"rating": 5})).await;

    let path = format!("/v1/admin/users/{}/trust", p.owner_id);
    // Recomputed once the rating reached it (one 5 against the 3.5 prior).
    let trust = eventually("the owner's trust score with the review", || async {
        let (status, trust) = app.call_parts(Method::GET, &path, Some(&admin), None).await;
        (status == 200 && trust["components"]["reviews"]["value"] == 3.75).then_some(trust)
    })
    .await;
    assert_eq!(trust["object"], "trust_score");
    assert_eq!(trust["user_id"], p.owner_id.as_str());
    let score = trust["score"].as_i64().unwrap();
    assert!((0..=100).contains(&score), "{trust}");
    let components = &trust["components"];
    // The listing helper verified the owner's identity.
    assert_eq!(components["identity"]["points"], 25.0);
    assert_eq!(components["experience"]["value"], 1.0);
    assert_eq!(components["cancellations"]["value"], 0.0);
    // The owner approved the request: their response time is known.
    assert!(components["response_time"]["value"].is_number(), "{trust}");
    let sum: f64 = [
        "identity",
        "contact",
        "reviews",
        "response_time",
        "cancellations",
        "disputes",
        "experience",
    ]
    .iter()
    .map(|k| components[k]["points"].as_f64().unwrap())
    .sum();
    assert!((sum - score as f64).abs() <= 0.6, "{sum} vs {score}");
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&p.owner), None)
        .await;
    assert!(me["response_time_avg_secs"].is_number(), "{me}");
    let announced: Vec<Value> = events(&app, "user.trust_updated")
        .await
        .into_iter()
        .filter(|e| e["user_id"] == p.owner_id.as_str())
        .collect();
    assert_eq!(announced.last().unwrap()["score"], score, "{announced:?}");

    // The renter's score counts the booking and the review they received.
    let renter = eventually("the renter's trust score", || async {
        let (status, trust) = app
            .call_parts(
                Method::GET,
                &format!("/v1/admin/users/{}/trust", p.renter_id),
                Some(&admin),
                None,
            )
            .await;
        (status == 200 && trust["components"]["reviews"]["value"] == 3.75).then_some(trust)
    })
    .await;
    assert_eq!(renter["components"]["identity"]["points"], 0.0);
    assert_eq!(renter["components"]["response_time"]["value"], Value::Null);

    // Admins only; 404 for a user never scored.
    let (status, error) = app
        .call_parts(Method::GET, &path, Some(&p.owner), None)
        .await;
    assert_eq!(status, 403, "{error}");
    let (status, _) = app.call_parts(Method::GET, &path, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = app
        .call_parts(
            Method::GET,
            &format!("/v1/admin/users/{}/trust", uuid::Uuid::now_v7()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn reviews_bad_input_is_a_validation_error_naming_the_field() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let b = completed_booking(&app, &p, 10).await;
    for (input, field) in [
        (json!({"rating": 0}), "rating"),
        (json!({"rating": 6}), "rating"),
        (json!({"rating": 4.5}), "rating"),
        (json!({"rating": "5"}), "rating"),
        (json!({"comment": "no rating"}), "rating"),
        (json!({"rating": 5, "comment": "x".repeat(2001)}), "comment"),
        (json!({"rating": 5, "stars": 5}), "stars"),
    ] {
        let (status, error) = review(&app, &p.renter, &b, input.clone()).await;
        assert_eq!(invalid_field(status, &error), field, "{input}");
    }
    // Nothing was written.
    assert!(booking_reviews(&app, &p.renter, &b).await.is_empty());
    // 2000 characters are fine.
    let mine = reviewed(
        &app,
        &p.renter,
        &b,
        json!({"rating": 5, "comment": "é".repeat(2000)}),
    )
    .await;
    for (input, field) in [
        (json!({"rating": 9}), "rating"),
        (json!({"comment": "y".repeat(2001)}), "comment"),
        (json!({"title": "x"}), "title"),
    ] {
        let (status, _, error) = patch(&app, &p.renter, &mine, None, input.clone()).await;
        assert_eq!(invalid_field(status, &error), field, "{input}");
    }
    let (status, error) = app
        .call_parts(
            Method::GET,
            "/v1/admin/reviews?status=hidden",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(invalid_field(status, &error), "status");
}
