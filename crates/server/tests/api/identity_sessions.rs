//! Sign-up, sign-in, refresh rotation with reuse detection, logout, lockout.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, error_code, parts};

async fn login(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    parts(
        app.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"email": email, "password": password})),
        )
        .await,
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(&json!({ "refresh_token": token })),
    )
    .await
}

#[tokio::test]
async fn register_returns_a_session_whose_token_reads_the_profile() {
    let app = TestApp::spawn().await;
    let session = app.register("Ada@Example.com").await;
    assert_eq!(session["object"], "session");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["user"]["email"], "ada@example.com");
    assert_eq!(session["user"]["roles"], json!(["renter"]));
    assert_eq!(session["user"]["identity_status"], "unverified");
    let token = session["access_token"].as_str().unwrap();
    let (status, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], session["user"]["id"]);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();
    assert_ne!(
        stored,
        refresh.as_bytes(),
        "refresh tokens are stored hashed"
    );
    assert_eq!(stored.len(), 32);
}

#[tokio::test]
async fn weak_passwords_duplicate_emails_and_bad_input_are_refused() {
    let app = TestApp::spawn().await;
    for (password, expect) in [("short1!", "10 characters"), ("password1234", "")] {
        let (status, body) = app
            .call_parts(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(&json!({"email": "a@example.com", "password": password, "display_name": "A"})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "weak_password");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(expect),
            "{body}"
        );
    }
    app.register("taken@example.com").await;
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"email": "TAKEN@example.com", "password": PASSWORD, "display_name": "B"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "email_taken"));
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"email": "not-an-email", "password": PASSWORD, "display_name": ""})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"display_name"),
        "{body}"
    );
}

#[tokio::test]
async fn login_answers_the_same_for_unknown_emails_and_wrong_passwords() {
    let app = TestApp::spawn().await;
    app.register("bob@example.com").await;
    let (status, _, ok) = login(&app, "BOB@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{ok}");
    assert!(ok["access_token"].is_string());
    let (s1, _, wrong) = login(&app, "bob@example.com", "Wrong-password-123!").await;
    let (s2, _, unknown) = login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong["error"], unknown["error"], "no account enumeration");
    assert_eq!(error_code(&wrong), "invalid_credentials");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let first = app.register("carol@example.com").await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(&app, &r1).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    let (status, third) = refresh(&app, &r2).await;
    assert_eq!(status, 200, "{third}");
    let r3 = third["refresh_token"].as_str().unwrap().to_owned();

    // r1 was already rotated: someone copied it. The family dies, r3 too.
    let (status, body) = refresh(&app, &r1).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
    let (status, body) = refresh(&app, &r3).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));

    // Another sign-in of the same user (another family) is unaffected.
    let (status, _, other) = login(&app, "carol@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let (status, _) = refresh(&app, other["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY position")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(
        actions.contains(&"session.refresh_token_reused".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn logout_revokes_the_family_and_unknown_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let session = app.register("dan@example.com").await;
    let r1 = session["refresh_token"].as_str().unwrap();
    let (_, rotated) = refresh(&app, r1).await;
    let r2 = rotated["refresh_token"].as_str().unwrap();
    let response = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(&json!({"refresh_token": r2})),
        )
        .await;
    assert_eq!(response.status(), 204);
    let (status, body) = refresh(&app, r2).await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    let (status, body) = refresh(&app, "rt_made-up").await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/logout",
            None,
            Some(&json!({"refresh_token": "nope"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (401, "invalid_refresh_token"));
}

#[tokio::test]
async fn five_failures_lock_the_account_with_escalating_backoff_then_it_lifts() {
    let app = TestApp::spawn().await;
    app.register("eve@example.com").await;
    for attempt in 1..=4 {
        let (status, _, body) = login(&app, "eve@example.com", "Wrong-password-123!").await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    let (status, headers, body) = login(&app, "eve@example.com", "Wrong-password-123!").await;
    assert_eq!((status, error_code(&body)), (423, "account_locked"));
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "first lock is a minute: {retry}");
    // Locked: even the right password is refused.
    let (status, _, body) = login(&app, "eve@example.com", PASSWORD).await;
    assert_eq!((status, error_code(&body)), (423, "account_locked"));

    // The lock lifts when its time passes (moved into the past here).
    sqlx::query("UPDATE users SET locked_until = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    for _ in 1..=5 {
        login(&app, "eve@example.com", "Wrong-password-123!").await;
    }
    let (status, headers, _) = login(&app, "eve@example.com", PASSWORD).await;
    assert_eq!(status, 423);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry > 60 && retry <= 300,
        "second lock is five minutes: {retry}"
    );

    sqlx::query("UPDATE users SET locked_until = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, _, body) = login(&app, "eve@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let (level, failures): (i32, i32) =
        sqlx::query_as("SELECT lockout_level, failed_logins FROM users")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        (level, failures),
        (0, 0),
        "a successful sign-in resets the counters"
    );
}

#[tokio::test]
async fn login_and_register_are_rate_limited_per_ip() {
    let app = TestApp::builder()
        .env("RATE_LIMITS", "on")
        .env("RATE_LIMIT_LOGIN", "3/min")
        .env("RATE_LIMIT_REGISTER", "2/min")
        .spawn()
        .await;
    for _ in 0..3 {
        let (status, _, _) = login(&app, "x@example.com", PASSWORD).await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) = login(&app, "x@example.com", PASSWORD).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
    assert!(headers.contains_key("retry-after"));
    app.register("r1@example.com").await;
    app.register("r2@example.com").await;
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"email": "r3@example.com", "password": PASSWORD, "display_name": "R"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"));
}

#[tokio::test]
async fn signup_velocity_caps_accounts_per_ip() {
    let app = TestApp::builder()
        .env("RATE_LIMITS", "on")
        .env("RATE_LIMIT_REGISTER", "100/min")
        .env("SIGNUP_VELOCITY", "2/day")
        .spawn()
        .await;
    app.register("v1@example.com").await;
    app.register("v2@example.com").await;
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(&json!({"email": "v3@example.com", "password": PASSWORD, "display_name": "V"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (429, "signup_velocity_exceeded"),
        "{body}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 2);
}
