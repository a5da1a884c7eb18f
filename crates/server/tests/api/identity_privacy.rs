//! GDPR: data export and erasure.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    identity_kyc::submit,
    identity_verification::{send_code, verify_phone},
    support::{PASSWORD, TestApp, error_code, parts},
};

#[tokio::test]
async fn the_export_holds_the_callers_data_and_nobody_elses() {
    let app = TestApp::spawn().await;
    let ada_session = app.register("ada@example.com").await;
    let ada = ada_session["user"]["id"].as_str().unwrap().to_owned();
    let ada_token = ada_session["access_token"].as_str().unwrap().to_owned();
    let ada_refresh = ada_session["refresh_token"].as_str().unwrap().to_owned();
    let (bob, bob_token) = app.user("bob@example.com").await;
    verify_phone(&app, &ada, &ada_token, "+33611111111").await;
    verify_phone(&app, &bob, &bob_token, "+33622222222").await;
    let (status, _) = submit(&app, &ada_token, "ADA-DOC-777").await;
    assert_eq!(status, 201);
    let (status, _) = submit(&app, &bob_token, "BOB-DOC-888").await;
    assert_eq!(status, 201);

    let (status, body) = app
        .call_parts(Method::GET, "/v1/users/me/data-export", None, None)
        .await;
    assert_eq!(status, 401, "{body}");

    let response = app
        .call(
            Method::GET,
            "/v1/users/me/data-export",
            Some(&ada_token),
            None,
        )
        .await;
    let (status, headers, export) = parts(response).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(export["object"], "data_export");
    assert!(export["generated_at"].is_string());
    assert_eq!(export["user"]["id"], ada.as_str());
    assert_eq!(export["user"]["email"], "ada@example.com");
    assert_eq!(export["user"]["phone"], "+33611111111");
    assert_eq!(export["roles"][0]["role"], "renter", "{export}");
    let verifications = export["identity_verifications"].as_array().unwrap();
    assert_eq!(verifications.len(), 1, "{export}");
    assert_eq!(verifications[0]["document_reference"], "ADA-DOC-777");
    assert_eq!(verifications[0]["status"], "pending");
    let sessions = export["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{export}");
    for field in ["id", "created_at", "expires_at"] {
        assert!(sessions[0][field].is_string(), "{field}: {export}");
    }
    assert!(sessions[0]["revoked_at"].is_null());
    assert_eq!(export["linked_identities"], json!([]));
    assert_eq!(export["mfa"], json!({ "enabled": false }));
    assert_eq!(export["api_keys_created"], json!([]));
    let deliveries = export["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{export}");
    let channels: Vec<&str> = deliveries
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["email", "sms"]);
    let actions: Vec<&str> = export["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.registered",
        "user.phone_verified",
        "user.identity_submitted",
        "user.data_exported",
    ] {
        assert!(actions.contains(&action), "{action} missing in {actions:?}");
    }

    let text = export.to_string();
    for secret in [
        bob.as_str(),
        "bob@example.com",
        "+33622222222",
        "BOB-DOC-888",
        ada_refresh.as_str(),
        "token_hash",
        "password_hash",
    ] {
        assert!(!text.contains(secret), "the export contains {secret}");
    }

    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'user.data_exported' AND subject_id = $1 AND actor_id = $1::uuid",
    )
    .bind(&ada)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

async fn login(app: &TestApp, email: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(&json!({ "email": email, "password": PASSWORD })),
    )
    .await
}

#[tokio::test]
async fn erasure_removes_personal_data_and_keeps_the_row() {
    let app = TestApp::spawn().await;
    let session = app.register("ada@example.com").await;
    let ada = session["user"]["id"].as_str().unwrap().to_owned();
    let token = session["access_token"].as_str().unwrap().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();
    verify_phone(&app, &ada, &token, "+33611111111").await;
    let (status, _) = submit(&app, &token, "ADA-DOC-777").await;
    assert_eq!(status, 201);
    let (status, body) = app
        .call_parts(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(&json!({
                "avatar_url": "https://cdn.example.com/ada.png",
                "location": { "lat": 48.85, "lng": 2.35 }
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = login(&app, "ada@example.com").await;
    assert_eq!(status, 200, "{body}");
    let (bob, bob_token) = app.user("bob@example.com").await;

    let (status, body) = app
        .call_parts(Method::DELETE, "/v1/users/me", None, None)
        .await;
    assert_eq!(status, 401, "{body}");

    let response = app
        .call(Method::DELETE, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(response.status().as_u16(), 204);

    // Signed out everywhere, and no way back in.
    let (status, body) = login(&app, "ada@example.com").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_credentials");
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(&json!({ "refresh_token": refresh })),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_refresh_token");
    let (status, body) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = app
        .call_parts(Method::DELETE, "/v1/users/me", Some(&token), None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = app
        .call_parts(Method::GET, &format!("/v1/users/{ada}"), None, None)
        .await;
    assert_eq!(status, 404);

    // The row stays, stripped.
    #[derive(sqlx::FromRow, Debug)]
    struct Erased {
        status: String,
        email: Option<String>,
        password_hash: Option<String>,
        display_name: String,
        avatar_url: Option<String>,
        phone_ciphertext: Option<Vec<u8>>,
        phone_blind_index: Option<Vec<u8>>,
        has_location: bool,
        preferences: Value,
        erased: bool,
    }
    let row: Erased = sqlx::query_as(
        "SELECT status, email, password_hash, display_name, avatar_url, phone_ciphertext, phone_blind_index,
                location IS NOT NULL AS has_location, preferences, erased_at IS NOT NULL AS erased
         FROM users WHERE id = $1::uuid",
    )
    .bind(&ada)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(row.status, "erased", "{row:?}");
    assert_eq!(row.email, None);
    assert_eq!(row.password_hash, None);
    assert_eq!(row.display_name, "Deleted user");
    assert_eq!(row.avatar_url, None);
    assert_eq!(row.phone_ciphertext, None);
    assert_eq!(row.phone_blind_index, None);
    assert!(!row.has_location);
    assert_eq!(row.preferences, json!({}));
    assert!(row.erased);

    let count = |sql: &'static str| {
        let db = app.db.clone();
        let ada = ada.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(ada)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    // Records that reference the account survive (the audit log is
    // append-only), and record the erasure.
    assert!(
        count(
            "SELECT count(*) FROM audit_log WHERE subject_id = $1 AND action = 'user.registered'"
        )
        .await
            == 1
    );
    assert!(
        count("SELECT count(*) FROM audit_log WHERE subject_id = $1 AND action = 'user.erased'")
            .await
            == 1
    );
    assert!(
        count("SELECT count(*) FROM events WHERE aggregate_id = $1 AND type = 'user.erased'").await
            == 1
    );
    assert!(
        count("SELECT count(*) FROM identity_verifications WHERE user_id = $1::uuid").await == 1
    );
    // Personal data does not.
    assert_eq!(
        count("SELECT count(*) FROM identity_verifications WHERE user_id = $1::uuid AND length(document_reference_ciphertext) > 0").await,
        0
    );
    for sql in [
        "SELECT count(*) FROM dev_deliveries WHERE user_id = $1::uuid",
        "SELECT count(*) FROM email_verifications WHERE user_id = $1::uuid",
        "SELECT count(*) FROM phone_verifications WHERE user_id = $1::uuid",
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1::uuid AND revoked_at IS NULL",
    ] {
        assert_eq!(count(sql).await, 0, "{sql}");
    }
    assert_eq!(
        count("SELECT count(*) FROM refresh_tokens WHERE user_id = $1::uuid AND revoked_reason = 'erased'").await,
        2
    );

    // The email and the phone are free again; Bob is untouched.
    let again = app.register("ada@example.com").await;
    assert_ne!(again["user"]["id"], ada.as_str());
    let (status, body) = send_code(&app, &bob_token, "+33611111111").await;
    assert_eq!(status, 202, "{body}");
    let (status, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&bob_token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], bob.as_str());
    assert_eq!(me["email"], "bob@example.com");
}
