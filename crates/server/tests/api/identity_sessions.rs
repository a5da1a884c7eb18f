//! Sign-up, sign-in, refresh rotation, logout, lockout.

use reqwest::Method;
use serde_json::json;

use crate::support::{PASSWORD, TestApp, error_code, parts};

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
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}
