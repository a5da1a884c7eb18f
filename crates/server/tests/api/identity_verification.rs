//! Email verification links and phone one-time codes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code};

/// Bodies of the messages sent to `user_id` on `channel`, oldest first.
pub(crate) async fn deliveries(app: &TestApp, user_id: &str, channel: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT body FROM dev_deliveries WHERE user_id = $1::uuid AND channel = $2 ORDER BY created_at, id",
    )
    .bind(user_id)
    .bind(channel)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// The verification token of the latest email sent to `user_id`.
pub(crate) async fn email_token(app: &TestApp, user_id: &str) -> String {
    let bodies = deliveries(app, user_id, "email").await;
    let body = bodies.last().expect("a verification email was sent");
    body.split_whitespace()
        .find(|w| w.starts_with("ev_"))
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_owned()
}

/// The code of the latest SMS sent to `user_id`.
pub(crate) async fn sms_code(app: &TestApp, user_id: &str) -> String {
    let bodies = deliveries(app, user_id, "sms").await;
    let body = bodies.last().expect("an SMS was sent");
    body.split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {body}"))
        .to_owned()
}

/// A 6-digit code that is not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

pub(crate) async fn send_code(app: &TestApp, token: &str, phone: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/auth/verify-phone/send",
        Some(token),
        Some(&json!({ "phone": phone })),
    )
    .await
}

pub(crate) async fn enter_code(app: &TestApp, token: &str, code: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/auth/verify-phone",
        Some(token),
        Some(&json!({ "code": code })),
    )
    .await
}

/// Verifies `phone` for the user through the API.
pub(crate) async fn verify_phone(app: &TestApp, user_id: &str, token: &str, phone: &str) {
    let (status, body) = send_code(app, token, phone).await;
    assert_eq!(status, 202, "{body}");
    let code = sms_code(app, user_id).await;
    let (status, body) = enter_code(app, token, &code).await;
    assert_eq!(status, 200, "{body}");
}

async fn verify_email(app: &TestApp, token: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/auth/verify-email",
        None,
        Some(&json!({ "token": token })),
    )
    .await
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_emailed_token_verifies_the_email_once() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("ada@example.com").await;
    let sent = deliveries(&app, &id, "email").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let recipient: String = sqlx::query_scalar(
        "SELECT recipient FROM dev_deliveries WHERE user_id = $1::uuid AND channel = 'email'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(recipient, "ada@example.com");
    let verification_token = email_token(&app, &id).await;
    // Stored as its SHA-256 only.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_verifications WHERE user_id = $1::uuid AND token_hash = sha256($2::bytea)
           AND expires_at BETWEEN now() + interval '23 hours' AND now() + interval '25 hours'",
    )
    .bind(&id)
    .bind(verification_token.as_bytes())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 1);

    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(me["email_verified"], false, "{me}");

    let (status, user) = verify_email(&app, &verification_token).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["object"], "user");
    assert_eq!(user["id"], id.as_str());
    assert_eq!(user["email_verified"], true);
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(me["email_verified"], true, "{me}");

    let (status, body) = verify_email(&app, &verification_token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_verification_token");

    let (status, body) = verify_email(&app, "ev_unknown").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_verification_token");

    // Nothing left to resend.
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/verify-email/resend",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "email_already_verified");
}

#[tokio::test]
async fn expired_tokens_are_refused_and_resend_replaces_the_link() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("bob@example.com").await;
    let first = email_token(&app, &id).await;
    sqlx::query("UPDATE email_verifications SET expires_at = now() - interval '1 minute'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = verify_email(&app, &first).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_verification_token");

    let (status, body) = app
        .call_parts(Method::POST, "/v1/auth/verify-email/resend", None, None)
        .await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/verify-email/resend",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["channel"], "email");
    assert_eq!(deliveries(&app, &id, "email").await.len(), 2);
    let second = email_token(&app, &id).await;
    assert_ne!(first, second);

    let (status, user) = verify_email(&app, &second).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email_verified"], true);
}

#[tokio::test]
async fn the_sms_code_verifies_the_phone_which_is_stored_encrypted() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("ada@example.com").await;

    let (status, body) = send_code(&app, &token, "0612345678").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    assert_eq!(body["error"]["details"][0]["field"], "phone");

    let (status, body) = send_code(&app, &token, "+33 6 12 34 56 78").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["channel"], "sms");
    let recipient: String = sqlx::query_scalar(
        "SELECT recipient FROM dev_deliveries WHERE user_id = $1::uuid AND channel = 'sms'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(recipient, "+33612345678");
    let code = sms_code(&app, &id).await;
    let pending: Vec<u8> = sqlx::query_scalar(
        "SELECT phone_ciphertext FROM phone_verifications WHERE user_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(!contains(&pending, b"612345678"));

    let (status, body) = enter_code(&app, &token, &wrong(&code)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_otp");
    assert_eq!(body["error"]["details"][0]["remaining_attempts"], 4);

    let (status, user) = enter_code(&app, &token, &code).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["phone"], "+33612345678");
    assert_eq!(user["phone_verified"], true);

    let (ciphertext, blind_index): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT phone_ciphertext, phone_blind_index FROM users WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(ciphertext.len() > 12);
    assert!(!contains(&ciphertext, b"612345678"));
    assert!(!contains(&ciphertext, b"33612"));
    assert_eq!(blind_index.len(), 32);
    let text: String =
        sqlx::query_scalar("SELECT phone_ciphertext::text FROM users WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!text.contains("612345678"), "{text}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM phone_verifications")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // The code is single use.
    let (status, body) = enter_code(&app, &token, &code).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_otp");
}

#[tokio::test]
async fn five_wrong_codes_kill_the_code() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("ada@example.com").await;
    let (status, body) = send_code(&app, &token, "+4915112345678").await;
    assert_eq!(status, 202, "{body}");
    let code = sms_code(&app, &id).await;
    for remaining in (1..=4).rev() {
        let (status, body) = enter_code(&app, &token, &wrong(&code)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "invalid_otp");
        assert_eq!(body["error"]["details"][0]["remaining_attempts"], remaining);
    }
    let (status, body) = enter_code(&app, &token, &wrong(&code)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "otp_attempts_exceeded");
    // Even the right code no longer works.
    let (status, body) = enter_code(&app, &token, &code).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "otp_attempts_exceeded");
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(me["phone_verified"], false, "{me}");

    // A new code starts over.
    let (status, _) = send_code(&app, &token, "+4915112345678").await;
    assert_eq!(status, 202);
    let code = sms_code(&app, &id).await;
    let (status, user) = enter_code(&app, &token, &code).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["phone"], "+4915112345678");
}

#[tokio::test]
async fn expired_codes_are_refused() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("ada@example.com").await;
    let (status, _) = send_code(&app, &token, "+33612345678").await;
    assert_eq!(status, 202);
    let code = sms_code(&app, &id).await;
    sqlx::query("UPDATE phone_verifications SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = enter_code(&app, &token, &code).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_otp");
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(me["phone_verified"], false, "{me}");
    assert_eq!(me["phone"], Value::Null, "{me}");
}

#[tokio::test]
async fn a_phone_verified_by_another_account_is_taken() {
    let app = TestApp::spawn().await;
    let (ada, ada_token) = app.user("ada@example.com").await;
    let (_, bob_token) = app.user("bob@example.com").await;
    verify_phone(&app, &ada, &ada_token, "+33611111111").await;

    for phone in ["+33611111111", "+33 6 11 11 11 11"] {
        let (status, body) = send_code(&app, &bob_token, phone).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(error_code(&body), "phone_taken");
    }
    // Ada may ask again for her own number; Bob may use another.
    let (status, body) = send_code(&app, &ada_token, "+33611111111").await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = send_code(&app, &bob_token, "+33622222222").await;
    assert_eq!(status, 202, "{body}");

    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/verify-phone/send",
            None,
            Some(&json!({ "phone": "+33633333333" })),
        )
        .await;
    assert_eq!(status, 401, "{body}");
}
