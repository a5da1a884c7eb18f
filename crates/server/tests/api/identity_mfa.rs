//! MFA: TOTP enrolment and confirmation, the login challenge, replay
//! protection, recovery codes, attempt limits and turning MFA off.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rentify_identity::mfa::totp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, error_code};

/// The current time step, once at least 15 seconds of it remain: the test
/// then knows which step the server sees while it uses step - 1.
async fn fresh_step() -> i64 {
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let into_step = now % 30.0;
        if into_step < 15.0 {
            return (now / 30.0).floor() as i64;
        }
        tokio::time::sleep(Duration::from_secs_f64(30.0 - into_step + 0.1)).await;
    }
}

fn code(secret: &[u8], step: i64) -> String {
    totp::code(secret, step as u64)
}

/// Six digits that match none of the steps around `step`.
fn wrong_code(secret: &[u8], step: i64) -> String {
    let valid: Vec<String> = (step - 2..=step + 2).map(|s| code(secret, s)).collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// Starts an enrolment; returns the decoded secret.
async fn enroll(app: &TestApp, token: &str, email: &str) -> Vec<u8> {
    let (status, body) = app
        .call_parts(Method::POST, "/v1/users/me/mfa/totp", Some(token), None)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["object"], "mfa_enrollment");
    let secret = body["secret"].as_str().unwrap();
    assert_eq!(
        body["otpauth_uri"],
        format!(
            "otpauth://totp/Rentify:{email}?secret={secret}&issuer=Rentify&algorithm=SHA1&digits=6&period=30"
        )
    );
    let bytes = totp::base32_decode(secret).unwrap();
    assert_eq!(bytes.len(), 20, "a 160-bit secret");
    bytes
}

async fn confirm(app: &TestApp, token: &str, code: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/users/me/mfa/totp/confirm",
        Some(token),
        Some(&json!({ "code": code })),
    )
    .await
}

struct Enabled {
    token: String,
    secret: Vec<u8>,
    /// Confirmation used `step - 1`; `step` and `step + 1` are still fresh.
    step: i64,
    recovery_codes: Vec<String>,
}

/// Registers `email`, enrols and confirms with the code of `step - 1`.
async fn user_with_mfa(app: &TestApp, email: &str) -> Enabled {
    let (_, token) = app.user(email).await;
    let secret = enroll(app, &token, email).await;
    let step = fresh_step().await;
    let (status, body) = confirm(app, &token, &code(&secret, step - 1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "mfa_status");
    assert_eq!(body["enabled"], true);
    let recovery_codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    Enabled {
        token,
        secret,
        step,
        recovery_codes,
    }
}

async fn login(app: &TestApp, email: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(&json!({"email": email, "password": PASSWORD})),
    )
    .await
}

/// Signs in with the password; asserts the `mfa_required` answer and
/// returns its challenge.
async fn challenge(app: &TestApp, email: &str) -> String {
    let (status, body) = login(app, email).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "mfa_required");
    assert!(body.get("access_token").is_none(), "{body}");
    let detail = &body["error"]["details"][0];
    assert_eq!(detail["expires_in"], 300, "{body}");
    assert_eq!(detail["methods"], json!(["totp", "recovery_code"]));
    let challenge = detail["challenge"].as_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("mfa_") && challenge.len() > 40,
        "{challenge}"
    );
    challenge
}

async fn complete(app: &TestApp, body: Value) -> (u16, Value) {
    app.call_parts(Method::POST, "/v1/auth/mfa", None, Some(&body))
        .await
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn enrolment_is_confirmed_with_a_code_and_then_login_needs_the_second_factor() {
    let app = TestApp::spawn().await;
    let email = "mfa@example.com";
    let (_, token) = app.user(email).await;

    // The secret is stored encrypted and unconfirmed; enrolling again replaces it.
    let first = enroll(&app, &token, email).await;
    let (ciphertext, confirmed): (Vec<u8>, bool) =
        sqlx::query_as("SELECT secret_ciphertext, confirmed_at IS NOT NULL FROM mfa_factors")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!confirmed);
    assert!(
        !ciphertext
            .windows(first.len())
            .any(|w| w == first.as_slice())
    );
    let secret = enroll(&app, &token, email).await;
    assert_ne!(first, secret);
    let (status, body) = login(&app, email).await;
    assert_eq!(
        status, 200,
        "an unconfirmed enrolment changes nothing: {body}"
    );

    let step = fresh_step().await;
    let (status, body) = confirm(&app, &token, &code(&first, step)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    let (status, body) = confirm(&app, &token, &wrong_code(&secret, step)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    let (status, body) = confirm(&app, &token, &code(&secret, step - 1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true);
    let recovery: Vec<&str> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(recovery.len(), 10);
    let distinct: std::collections::BTreeSet<_> = recovery.iter().collect();
    assert_eq!(distinct.len(), 10);
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM mfa_recovery_codes")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 10);
    assert!(hashes.iter().all(|h| h.len() == 32), "stored as SHA-256");
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(me["mfa_enabled"], true, "{me}");
    let (status, body) = app
        .call_parts(Method::POST, "/v1/users/me/mfa/totp", Some(&token), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "mfa_already_enabled");

    // The password alone no longer signs in.
    let challenge = challenge(&app, email).await;
    let (status, session) = complete(
        &app,
        json!({"challenge": challenge, "code": code(&secret, step)}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["object"], "session");
    assert_eq!(session["user"]["email"], email);
    let access = session["access_token"].as_str().unwrap();
    let (status, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(access), None)
        .await;
    assert_eq!(status, 200, "{me}");

    // The challenge works once.
    let (status, body) = complete(
        &app,
        json!({"challenge": challenge, "code": code(&secret, step + 1)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_challenge");

    let methods: Vec<String> = sqlx::query_scalar(
        "SELECT metadata->>'method' FROM audit_log WHERE action = 'session.created' ORDER BY occurred_at",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        methods.last().map(String::as_str),
        Some("mfa"),
        "{methods:?}"
    );
    assert_eq!(audit_count(&app, "mfa.enrolled").await, 2);
    assert_eq!(audit_count(&app, "mfa.enabled").await, 1);
}

#[tokio::test]
async fn api_keys_cannot_manage_mfa() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin("root@example.com").await;
    let (status, key) = app
        .call_parts(
            Method::POST,
            "/v1/api-keys",
            Some(&admin),
            Some(&json!({"name": "tool", "scopes": ["users:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap();
    let (status, body) = app
        .call_parts(Method::POST, "/v1/users/me/mfa/totp", Some(secret), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    let (status, body) = app
        .call_parts(Method::POST, "/v1/users/me/mfa/totp", None, None)
        .await;
    assert_eq!(status, 401, "{body}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM mfa_factors")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_totp_code_is_never_accepted_twice() {
    let app = TestApp::spawn().await;
    let email = "replay@example.com";
    let user = user_with_mfa(&app, email).await;
    let (secret, step) = (&user.secret, user.step);

    // The confirmation code cannot sign in.
    let first = challenge(&app, email).await;
    let (status, body) = complete(
        &app,
        json!({"challenge": first, "code": code(secret, step - 1)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    assert_eq!(body["error"]["details"][0]["attempts_remaining"], 4);
    let (status, body) = complete(
        &app,
        json!({"challenge": first, "code": code(secret, step)}),
    )
    .await;
    assert_eq!(
        status, 200,
        "a wrong code leaves the challenge usable: {body}"
    );

    // Replayed on a new challenge, the same code is refused...
    let second = challenge(&app, email).await;
    let (status, body) = complete(
        &app,
        json!({"challenge": second, "code": code(secret, step)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    // ...while the next step's code is accepted.
    let (status, body) = complete(
        &app,
        json!({"challenge": second, "code": code(secret, step + 1)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let last: Option<i64> = sqlx::query_scalar("SELECT last_used_step FROM mfa_factors")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(last, Some(step + 1));
    assert_eq!(audit_count(&app, "session.mfa_failed").await, 2);
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = TestApp::spawn().await;
    let email = "recover@example.com";
    let user = user_with_mfa(&app, email).await;
    let codes = &user.recovery_codes;
    assert_eq!(codes.len(), 10);

    let first = challenge(&app, email).await;
    let (status, body) = complete(
        &app,
        json!({"challenge": first, "recovery_code": codes[0].to_uppercase()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "session");

    let second = challenge(&app, email).await;
    let (status, body) = complete(
        &app,
        json!({"challenge": second, "recovery_code": codes[0]}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    let (status, body) = complete(
        &app,
        json!({"challenge": second, "recovery_code": "zzzzz-zzzzz"}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    let (status, body) = complete(
        &app,
        json!({"challenge": second, "recovery_code": codes[1]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mfa_recovery_codes WHERE used_at IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(used, 2);
    assert_eq!(audit_count(&app, "mfa.recovery_code_used").await, 2);
    let remaining: Option<String> = sqlx::query_scalar(
        "SELECT metadata->>'remaining' FROM audit_log WHERE action = 'mfa.recovery_code_used' ORDER BY occurred_at DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(remaining.as_deref(), Some("8"));
}

#[tokio::test]
async fn five_wrong_codes_or_expiry_kill_the_challenge() {
    let app = TestApp::spawn().await;
    let email = "guess@example.com";
    let user = user_with_mfa(&app, email).await;
    let (secret, step) = (&user.secret, user.step);
    let wrong = wrong_code(secret, step);

    let doomed = challenge(&app, email).await;
    for remaining in (0..5).rev() {
        let (status, body) = complete(&app, json!({"challenge": doomed, "code": wrong})).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_code(&body), "invalid_mfa_code");
        assert_eq!(body["error"]["details"][0]["attempts_remaining"], remaining);
    }
    let (status, body) = complete(
        &app,
        json!({"challenge": doomed, "code": code(secret, step)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_challenge");

    // An expired challenge is dead too.
    let expired = challenge(&app, email).await;
    sqlx::query("UPDATE mfa_challenges SET expires_at = now() - interval '1 second' WHERE used_at IS NULL AND attempts = 0")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = complete(
        &app,
        json!({"challenge": expired, "code": code(secret, step)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_challenge");

    let (status, body) = complete(
        &app,
        json!({"challenge": "mfa_unknown", "code": code(secret, step)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_challenge");

    // The code itself was never spent: a fresh challenge takes it.
    let fresh = challenge(&app, email).await;
    let (status, body) = complete(
        &app,
        json!({"challenge": fresh, "code": code(secret, step), "recovery_code": user.recovery_codes[0]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let (status, body) = complete(&app, json!({"challenge": fresh})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let (status, body) = complete(
        &app,
        json!({"challenge": fresh, "code": code(secret, step)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn disabling_needs_a_code_and_turns_the_second_factor_off() {
    let app = TestApp::spawn().await;
    let email = "off@example.com";
    let user = user_with_mfa(&app, email).await;
    let (token, secret, step) = (&user.token, &user.secret, user.step);
    let disable = |code: String| {
        let app = &app;
        async move {
            app.call_parts(
                Method::DELETE,
                "/v1/users/me/mfa",
                Some(token),
                Some(&json!({ "code": code })),
            )
            .await
        }
    };

    let (status, body) = disable(wrong_code(secret, step)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    let (status, body) = disable(code(secret, step - 1)).await;
    assert_eq!(status, 400, "the confirmation code is spent: {body}");
    assert_eq!(error_code(&body), "invalid_mfa_code");
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(token), None)
        .await;
    assert_eq!(me["mfa_enabled"], true, "{me}");

    let pending = challenge(&app, email).await;
    let (status, body) = disable(code(secret, step)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"object": "mfa_status", "enabled": false}));
    let (factors, codes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM mfa_factors), (SELECT count(*) FROM mfa_recovery_codes)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((factors, codes), (0, 0));
    let (status, body) = login(&app, email).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["mfa_enabled"], false);
    // A challenge issued before MFA was turned off is dead.
    let (status, body) = complete(
        &app,
        json!({"challenge": pending, "code": code(secret, step + 1)}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_mfa_challenge");
    let (status, body) = disable(code(secret, step + 1)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "mfa_not_enabled");

    // A recovery code turns it off as well.
    let secret = enroll(&app, token, email).await;
    let (status, body) = confirm(&app, token, &code(&secret, step)).await;
    assert_eq!(status, 200, "{body}");
    let recovery = body["recovery_codes"][3].as_str().unwrap().to_owned();
    let (status, body) = disable(recovery).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false);
    let (status, body) = login(&app, email).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(audit_count(&app, "mfa.disabled").await, 2);
    assert_eq!(audit_count(&app, "mfa.recovery_code_used").await, 1);
}
