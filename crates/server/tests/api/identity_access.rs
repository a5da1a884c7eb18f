//! Profiles, ownership, RBAC, scoped API keys, the audit log and the
//! operator's `rentify admin create`.

use reqwest::Method;
use serde_json::json;

use crate::support::{PASSWORD, TestApp, error_code};

#[tokio::test]
async fn profile_updates_and_preferences_round_trip() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("pat@example.com").await;
    let (status, me) = app
        .call_parts(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(&json!({"display_name": "Pat", "avatar_url": "https://cdn.example/p.png", "location": {"lat": 48.85, "lng": 2.35}})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["display_name"], "Pat");
    assert_eq!(me["location"], json!({"lat": 48.85, "lng": 2.35}));
    let (status, me) = app
        .call_parts(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            Some(&json!({"location": null, "avatar_url": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        me["location"].is_null() && me["avatar_url"].is_null(),
        "{me}"
    );
    assert_eq!(me["display_name"], "Pat", "absent fields are kept");

    let (status, me) = app
        .call_parts(
            Method::PATCH,
            "/v1/users/me/preferences",
            Some(&token),
            Some(&json!({"category_affinities": ["cameras", "bikes"], "budget": {"min": 1000, "max": 5000, "currency": "EUR"}})),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    let (_, me) = app
        .call_parts(
            Method::PATCH,
            "/v1/users/me/preferences",
            Some(&token),
            Some(&json!({"max_distance_km": 25.0})),
        )
        .await;
    assert_eq!(
        me["preferences"]["category_affinities"],
        json!(["cameras", "bikes"])
    );
    assert_eq!(me["preferences"]["max_distance_km"], 25.0);

    for (path, body, field) in [
        (
            "/v1/users/me",
            json!({"location": {"lat": 91.0, "lng": 0.0}}),
            "lat",
        ),
        (
            "/v1/users/me",
            json!({"avatar_url": "javascript:alert(1)"}),
            "avatar_url",
        ),
        ("/v1/users/me", json!({"email": "new@example.com"}), "email"),
        (
            "/v1/users/me/preferences",
            json!({"budget": {"min": 10, "max": 1, "currency": "EUR"}}),
            "budget",
        ),
    ] {
        let (status, body) = app
            .call_parts(Method::PATCH, path, Some(&token), Some(&body))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "validation_failed"),
            "{path} {body}"
        );
        assert!(body.to_string().contains(field), "{field} named in {body}");
    }
}

#[tokio::test]
async fn public_profiles_show_nothing_private() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user("alice@example.com").await;
    let (_, bob_token) = app.user("bob@example.com").await;
    app.call(
        Method::PATCH,
        "/v1/users/me",
        Some(&alice_token),
        Some(&json!({"location": {"lat": 1.0, "lng": 2.0}})),
    )
    .await;
    let (status, profile) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/{alice}"),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(profile["object"], "public_profile");
    let keys: Vec<&String> = profile.as_object().unwrap().keys().collect();
    for private in [
        "email",
        "phone",
        "location",
        "preferences",
        "roles",
        "mfa_enabled",
    ] {
        assert!(
            !keys.iter().any(|k| *k == private),
            "{private} leaked: {profile}"
        );
    }
    assert!(!profile.to_string().contains("alice@example.com"));
    assert_eq!(profile["identity_verified"], false);
    let (status, _) = app
        .call_parts(
            Method::GET,
            &format!("/v1/users/{}", uuid::Uuid::now_v7()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Another user's private view is an admin route: a renter gets 403.
    let (status, body) = app
        .call_parts(
            Method::GET,
            &format!("/v1/admin/users/{alice}"),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
}

#[tokio::test]
async fn admins_grant_and_revoke_roles_and_renters_cannot() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = app.admin("root@example.com").await;
    let (user, user_token) = app.user("u@example.com").await;
    let path = format!("/v1/admin/users/{user}/roles");
    let (status, body) = app
        .call_parts(
            Method::POST,
            &path,
            Some(&user_token),
            Some(&json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "a renter cannot self-promote"
    );
    let (status, body) = app
        .call_parts(
            Method::POST,
            &path,
            Some(&admin),
            Some(&json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"], json!(["renter", "owner"]));
    let (status, body) = app
        .call_parts(
            Method::POST,
            &path,
            Some(&admin),
            Some(&json!({"role": "superuser"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    let (status, body) = app
        .call_parts(
            Method::DELETE,
            &format!("{path}/renter"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "role_not_revocable"));
    let (status, body) = app
        .call_parts(
            Method::DELETE,
            &format!("/v1/admin/users/{admin_id}/roles/admin"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "role_not_revocable"));
    let (status, body) = app
        .call_parts(Method::DELETE, &format!("{path}/owner"), Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["roles"], json!(["renter"]));
    let (status, _) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/users/{}/roles", uuid::Uuid::now_v7()),
            Some(&admin),
            Some(&json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 404);

    // A demoted admin's token still says admin for a while, but role
    // changes re-check the database.
    let (other_admin_id, other_admin) = app.admin("root2@example.com").await;
    app.call(
        Method::DELETE,
        &format!("/v1/admin/users/{other_admin_id}/roles/admin"),
        Some(&admin),
        None,
    )
    .await;
    let (status, _) = app
        .call_parts(
            Method::POST,
            &path,
            Some(&other_admin),
            Some(&json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403);

    let (status, log) = app
        .call_parts(
            Method::GET,
            &format!("/v1/admin/audit-log?subject_id={user}&limit=50"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..3],
        ["user.role_revoked", "user.role_granted", "user.registered"],
        "{log}"
    );
    let granted = &log["data"][1];
    assert_eq!(granted["actor_id"], admin_id.as_str());
    assert!(
        granted["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let (status, _) = app
        .call_parts(Method::GET, "/v1/admin/audit-log", Some(&user_token), None)
        .await;
    assert_eq!(status, 403);
    // The database refuses to rewrite history.
    let tampered = sqlx::query("UPDATE audit_log SET action = 'nothing'")
        .execute(&app.db)
        .await;
    assert!(tampered.is_err());
    let deleted = sqlx::query("DELETE FROM audit_log").execute(&app.db).await;
    assert!(deleted.is_err());
}

#[tokio::test]
async fn api_keys_authenticate_with_exactly_their_scopes_until_revoked() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin("ops@example.com").await;
    let (user, user_token) = app.user("member@example.com").await;
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/api-keys",
            Some(&user_token),
            Some(&json!({"name": "x", "scopes": ["users:read"]})),
        )
        .await;
    assert_eq!(status, 403, "only admins create keys: {body}");
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/api-keys",
            Some(&admin),
            Some(&json!({"name": "x", "scopes": ["users:read", "root"]})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    assert_eq!(body["error"]["details"][0]["field"], "scopes[1]");

    let (status, key) = app
        .call_parts(
            Method::POST,
            "/v1/api-keys",
            Some(&admin),
            Some(&json!({"name": "support tool", "scopes": ["users:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rk_live_") && secret.len() > 40);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE secret_hash = convert_to($1, 'UTF8')",
    )
    .bind(&secret)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 0, "the secret is not stored as is");

    let (status, body) = app
        .call_parts(
            Method::GET,
            &format!("/v1/admin/users/{user}"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(status, 200, "users:read lets the key read accounts: {body}");
    assert_eq!(body["email"], "member@example.com");
    let (status, _) = app
        .call_parts(Method::GET, "/v1/admin/audit-log", Some(&secret), None)
        .await;
    assert_eq!(status, 403, "audit:read is not among its scopes");
    let (status, _) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/users/{user}/roles"),
            Some(&secret),
            Some(&json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403, "keys hold no roles");
    let (status, _) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&secret), None)
        .await;
    assert_eq!(status, 403, "a key is not a person");

    let (status, list) = app
        .call_parts(Method::GET, "/v1/api-keys", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert!(
        list["data"][0]["secret"].is_null(),
        "secrets are shown once: {list}"
    );
    assert!(list["data"][0]["last_used_at"].is_string(), "{list}");

    let id = key["id"].as_str().unwrap();
    let (status, revoked) = app
        .call_parts(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    let (status, body) = app
        .call_parts(
            Method::GET,
            &format!("/v1/admin/users/{user}"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (401, "invalid_token"));
}

#[tokio::test]
async fn the_operator_command_creates_an_admin() {
    let app = TestApp::spawn().await;
    let binary = env!("CARGO_BIN_EXE_rentify");
    let run = |args: &[&str]| {
        std::process::Command::new(binary)
            .args(args)
            .env("DATABASE_URL", &app.database.url)
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let output = run(&[
        "admin",
        "create",
        "--email",
        "Boss@Example.com",
        "--password",
        PASSWORD,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("created admin boss@example.com"));
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"email": "boss@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["roles"], json!(["renter", "admin"]));
    // Again: idempotent, the account stays admin.
    let output = run(&[
        "admin",
        "create",
        "--email",
        "boss@example.com",
        "--password",
        PASSWORD,
    ]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("is now an admin"));
    let output = run(&[
        "admin",
        "create",
        "--email",
        "weak@example.com",
        "--password",
        "password",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("weak_password"));
}
