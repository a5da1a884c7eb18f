//! The end-to-end journey of seed 000's "E2E tests", over HTTP only (the
//! owner's identity check is the KYC provider's signed webhook, as in
//! production): register → list → publish → search → book (idempotently) →
//! pay → approve → start → complete → both review → the owner's rating and
//! payout are visible and the ledger balances. `make demo` walks the same
//! steps against a running server.

use reqwest::Method;
use serde_json::json;

use crate::{
    bookings::{act, body, book, day},
    payments_bookings::{assert_books_balance, owner_wallet, settled},
    payments_wallet::eventually,
    support::TestApp,
};

/// Plays the KYC provider: a signed `identity_verification.verified`.
async fn verify_identity(app: &TestApp, token: &str) {
    let (status, verification) = app
        .call_parts(
            Method::POST,
            "/v1/users/me/identity",
            Some(token),
            Some(&json!({"document_type": "passport", "document_reference": "P-DEMO-0001"})),
        )
        .await;
    assert_eq!(status, 201, "{verification}");
    let event = json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "type": "identity_verification.verified",
        "data": {"verification_id": verification["id"]},
    });
    let raw = serde_json::to_vec(&event).unwrap();
    let signature = rentify_platform::webhook_signature::signature_header(
        rentify_identity::kyc::DEV_WEBHOOK_SECRET.as_bytes(),
        chrono::Utc::now().timestamp(),
        &raw,
    );
    let response = app
        .client
        .post(app.url("/v1/webhooks/kyc"))
        .header("Rentify-Signature", signature)
        .header("Content-Type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn journey_from_sign_up_to_reviews_and_payout() {
    let app = TestApp::spawn().await;

    // 1. Two people sign up; the owner verifies their identity.
    let (owner_id, owner) = app.user("ada@example.com").await;
    let (renter_id, renter) = app.user("grace@example.com").await;
    verify_identity(&app, &owner).await;

    // 2. The owner lists a camera and publishes it (verified owners' items
    //    go live without review).
    let mut listing = crate::support::listing_body();
    listing["title"] = json!("Leica M6 rangefinder");
    listing["instant_book"] = json!(false);
    let (status, created) = app
        .call_parts(Method::POST, "/v1/listings", Some(&owner), Some(&listing))
        .await;
    assert_eq!(status, 201, "{created}");
    let listing_id = created["id"].as_str().unwrap().to_owned();
    let (status, published) = app
        .call_parts(
            Method::POST,
            &format!("/v1/listings/{listing_id}/publish"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(
        (status, published["status"].as_str()),
        (200, Some("active")),
        "{published}"
    );

    // 3. The renter finds it (with a typo) near Paris, available next week.
    let query = format!(
        "/v1/search?q=leika%20rangefinder&lat=48.86&lng=2.35&radius_km=5&available_from={}&available_to={}",
        day(10, 10).to_rfc3339().replace('+', "%2B"),
        day(12, 10).to_rfc3339().replace('+', "%2B"),
    );
    let hit = eventually("the listing to be searchable", || async {
        let (status, page) = app.call_parts(Method::GET, &query, None, None).await;
        assert_eq!(status, 200, "{page}");
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["listing"]["id"] == listing_id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(hit["listing"]["owner"]["verified"], true);

    // 4. Books it with an Idempotency-Key; the retry returns the same booking.
    app.add_card(&renter, "tok_visa").await;
    let request = body(&created, day(10, 10), day(12, 10));
    let (status, _, booking) = book(&app, &renter, Some("journey-booking-1"), &request).await;
    assert_eq!(status, 201, "{booking}");
    let (status, _, again) = book(&app, &renter, Some("journey-booking-1"), &request).await;
    assert_eq!(status, 201);
    assert_eq!(again["id"], booking["id"]);
    let booking_id = booking["id"].as_str().unwrap().to_owned();

    // 5. The card is authorized (sandbox webhook), the owner approves.
    eventually("the authorization", || async {
        let (_, b) = app
            .call_parts(
                Method::GET,
                &format!("/v1/bookings/{booking_id}"),
                Some(&renter),
                None,
            )
            .await;
        (b["status"] == "requested").then_some(b)
    })
    .await;
    for (token, action) in [(&owner, "approve"), (&owner, "start"), (&owner, "complete")] {
        let (status, b) = act(&app, token, &booking, action, None).await;
        assert_eq!(status, 200, "{action}: {b}");
    }

    // 6. Both review; the double blind lifts once both have.
    for (token, rating, comment) in [
        (&renter, 5, "Spotless camera, friendly owner."),
        (&owner, 4, "Returned on time and in good shape."),
    ] {
        let (status, review) = app
            .call_parts(
                Method::POST,
                &format!("/v1/bookings/{booking_id}/reviews"),
                Some(token),
                Some(&json!({"rating": rating, "comment": comment})),
            )
            .await;
        assert_eq!(status, 201, "{review}");
    }

    // 7. The owner's rating shows on their profile and their reviews.
    let profile = eventually("the owner's rating", || async {
        let (_, user) = app
            .call_parts(
                Method::GET,
                &format!("/v1/users/{owner_id}"),
                Some(&renter),
                None,
            )
            .await;
        (user["rating_summary"]["count"] == 1).then_some(user)
    })
    .await;
    assert_eq!(profile["rating_summary"]["avg"], 5.0);
    let (status, reviews) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/{owner_id}/reviews"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{reviews}");
    assert_eq!(reviews["data"][0]["author_id"], renter_id.as_str());
    assert_eq!(reviews["data"][0]["rating"], 5);
    // Search ranks with it too.
    eventually("search to carry the rating", || async {
        let (_, page) = app
            .call_parts(Method::GET, "/v1/search?q=leica&min_rating=5", None, None)
            .await;
        (page["total"] == 1).then_some(page)
    })
    .await;

    // 8. The payout: 2 days at 25.00 less the 3 % commission, and the books
    //    balance.
    settled(&app).await;
    assert_eq!(owner_wallet(&app, &owner).await["balance"], 4_850);
    let (status, transactions) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{booking_id}/transactions"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{transactions}");
    let kinds: Vec<&str> = transactions["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"charge") && kinds.contains(&"payout"),
        "{kinds:?}"
    );
    assert_books_balance(&app).await;
}
