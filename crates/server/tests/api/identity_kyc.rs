//! Identity verification (KYC): submission and the provider's signed webhook.

use rentify_identity::kyc::signature_header;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code, parts};

const SECRET: &str = "whsec_test_kyc_secret";

async fn app() -> TestApp {
    TestApp::builder()
        .env("KYC_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await
}

pub(crate) async fn submit(app: &TestApp, token: &str, reference: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/users/me/identity",
        Some(token),
        Some(&json!({ "document_type": "passport", "document_reference": reference })),
    )
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, verification_id: &str, reason: Option<&str>) -> String {
    let mut data = json!({ "verification_id": verification_id });
    if let Some(reason) = reason {
        data["reason"] = json!(reason);
    }
    json!({ "id": id, "type": format!("identity_verification.{kind}"), "data": data }).to_string()
}

/// POSTs `body` verbatim with the given signature header.
async fn deliver(app: &TestApp, body: &str, signature: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/v1/webhooks/kyc"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Rentify-Signature", signature);
    }
    let (status, _, body) = parts(request.send().await.unwrap()).await;
    (status, body)
}

/// Delivers `body` signed now with `secret`.
async fn deliver_signed(app: &TestApp, body: &str, secret: &str) -> (u16, Value) {
    let header = signature_header(secret.as_bytes(), now(), body.as_bytes());
    deliver(app, body, Some(&header)).await
}

async fn status_of(app: &TestApp, token: &str) -> String {
    let (status, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    me["identity_status"].as_str().unwrap().to_owned()
}

async fn count(app: &TestApp, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_verified_webhook_verifies_the_identity() {
    let app = app().await;
    let (user_id, token) = app.user("ada@example.com").await;
    let (status, body) = app
        .call_parts(Method::GET, "/v1/users/me/identity", Some(&token), None)
        .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/users/me/identity",
            Some(&token),
            Some(&json!({ "document_type": "selfie", "document_reference": "x" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, verification) = submit(&app, &token, "DOC-REF-12345").await;
    assert_eq!(status, 201, "{verification}");
    assert_eq!(verification["object"], "identity_verification");
    assert_eq!(verification["status"], "pending");
    assert_eq!(verification["document_type"], "passport");
    assert!(verification["submitted_at"].is_string(), "{verification}");
    let verification_id = verification["id"].as_str().unwrap().to_owned();
    assert_eq!(status_of(&app, &token).await, "pending");
    let stored: Vec<u8> = sqlx::query_scalar(
        "SELECT document_reference_ciphertext FROM identity_verifications WHERE id = $1::uuid",
    )
    .bind(&verification_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(stored.len() > 12);
    assert!(!stored.windows(7).any(|w| w == b"REF-123"));

    let (status, body) = submit(&app, &token, "DOC-REF-99999").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "identity_verification_pending");

    let (status, latest) = app
        .call_parts(Method::GET, "/v1/users/me/identity", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["id"], verification_id.as_str());

    let body = event("evt_1", "verified", &verification_id, None);
    let (status, receipt) = deliver_signed(&app, &body, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt, json!({ "received": true }));
    assert_eq!(status_of(&app, &token).await, "verified");
    let (status, profile) = app
        .call_parts(Method::GET, &format!("/v1/users/{user_id}"), None, None)
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["identity_verified"], true);
    let (_, latest) = app
        .call_parts(Method::GET, "/v1/users/me/identity", Some(&token), None)
        .await;
    assert_eq!(latest["status"], "verified", "{latest}");
    assert!(latest["decided_at"].is_string(), "{latest}");

    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'user.identity_verified' AND actor_kind = 'provider'
               AND actor_id IS NULL AND request_id IS NOT NULL AND subject_id = $1",
            &user_id
        )
        .await,
        1
    );
    let events_sql =
        "SELECT count(*) FROM events WHERE type = 'user.identity_verified' AND aggregate_id = $1";
    assert_eq!(count(&app, events_sql, &user_id).await, 1);

    // The same event again: acknowledged, not re-applied.
    let (status, receipt) = deliver_signed(&app, &body, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt, json!({ "received": true, "duplicate": true }));
    assert_eq!(count(&app, events_sql, &user_id).await, 1);

    let (status, body) = submit(&app, &token, "DOC-REF-99999").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "identity_already_verified");
}

#[tokio::test]
async fn bad_signatures_change_nothing() {
    let app = app().await;
    let (user_id, token) = app.user("ada@example.com").await;
    let (_, verification) = submit(&app, &token, "DOC-1").await;
    let verification_id = verification["id"].as_str().unwrap().to_owned();
    let body = event("evt_bad", "verified", &verification_id, None);

    let stale = signature_header(SECRET.as_bytes(), now() - 600, body.as_bytes());
    let future = signature_header(SECRET.as_bytes(), now() + 600, body.as_bytes());
    let signed_other = event("evt_bad", "verified", &user_id, None);
    let tampered = signature_header(SECRET.as_bytes(), now(), signed_other.as_bytes());
    let wrong_secret = signature_header(b"whsec_not_it", now(), body.as_bytes());
    let dev_secret = signature_header(b"whsec_dev_kyc", now(), body.as_bytes());
    for (what, header) in [
        ("missing", None),
        ("garbage", Some("nonsense".to_owned())),
        ("stale", Some(stale)),
        ("future", Some(future)),
        ("tampered", Some(tampered)),
        ("wrong secret", Some(wrong_secret)),
        ("dev secret when one is configured", Some(dev_secret)),
    ] {
        let (status, response) = deliver(&app, &body, header.as_deref()).await;
        assert_eq!(status, 400, "{what}: {response}");
        assert_eq!(error_code(&response), "invalid_signature", "{what}");
    }
    assert_eq!(status_of(&app, &token).await, "pending");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM kyc_webhook_events WHERE event_id = $1",
            "evt_bad"
        )
        .await,
        0
    );
    let (_, latest) = app
        .call_parts(Method::GET, "/v1/users/me/identity", Some(&token), None)
        .await;
    assert_eq!(latest["status"], "pending", "{latest}");

    // The same event, correctly signed, still applies.
    let (status, receipt) = deliver_signed(&app, &body, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(status_of(&app, &token).await, "verified");
}

#[tokio::test]
async fn a_replayed_event_id_has_no_second_effect() {
    let app = app().await;
    let (user_id, token) = app.user("ada@example.com").await;
    let (_, verification) = submit(&app, &token, "DOC-2").await;
    let verification_id = verification["id"].as_str().unwrap().to_owned();

    let rejected = event(
        "evt_7",
        "rejected",
        &verification_id,
        Some("document_expired"),
    );
    let (status, receipt) = deliver_signed(&app, &rejected, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(status_of(&app, &token).await, "rejected");
    let (_, latest) = app
        .call_parts(Method::GET, "/v1/users/me/identity", Some(&token), None)
        .await;
    assert_eq!(latest["status"], "rejected", "{latest}");
    assert_eq!(latest["reason"], "document_expired", "{latest}");
    let rejected_events =
        "SELECT count(*) FROM events WHERE type = 'user.identity_rejected' AND aggregate_id = $1";
    assert_eq!(count(&app, rejected_events, &user_id).await, 1);

    // A different body under an already-seen event id, validly signed.
    let replay = event("evt_7", "verified", &verification_id, None);
    let (status, receipt) = deliver_signed(&app, &replay, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["duplicate"], true, "{receipt}");
    assert_eq!(status_of(&app, &token).await, "rejected");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE type = 'user.identity_verified' AND aggregate_id = $1",
            &user_id
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'user.identity_%ed' AND actor_kind = 'provider' AND subject_id = $1",
            &user_id
        )
        .await,
        1
    );

    // A decided verification is not decided again by a new event.
    let late = event("evt_8", "verified", &verification_id, None);
    let (status, receipt) = deliver_signed(&app, &late, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["ignored"], true, "{receipt}");
    assert_eq!(status_of(&app, &token).await, "rejected");

    // After a rejection the user may submit again.
    let (status, body) = submit(&app, &token, "DOC-3").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(status_of(&app, &token).await, "pending");
}

#[tokio::test]
async fn unknown_verifications_are_acknowledged_and_ignored() {
    let app = app().await;
    let body = event(
        "evt_unknown",
        "verified",
        "00000000-0000-7000-8000-000000000000",
        None,
    );
    let (status, receipt) = deliver_signed(&app, &body, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt, json!({ "received": true, "ignored": true }));
    let (status, receipt) = deliver_signed(&app, &body, SECRET).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["duplicate"], true, "{receipt}");
}

#[tokio::test]
async fn development_uses_the_documented_dev_secret() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("ada@example.com").await;
    let (_, verification) = submit(&app, &token, "DOC-4").await;
    let verification_id = verification["id"].as_str().unwrap().to_owned();
    let body = event("evt_dev", "verified", &verification_id, None);
    let (status, response) = deliver_signed(&app, &body, SECRET).await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(error_code(&response), "invalid_signature");
    let (status, receipt) = deliver_signed(&app, &body, "whsec_dev_kyc").await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(status_of(&app, &token).await, "verified");
}
