//! Sign-in with an external OpenID Connect provider, against a real provider
//! (`scripts/oidc-provider`, the npm package `oidc-provider`) run locally.
//!
//! The provider knows Rentify's callback as [`CALLBACK`], a fixed URL (the
//! app's port is only known after it starts); the tests take the query the
//! provider appends to it and open the real app's callback with it.

use std::collections::HashMap;

use reqwest::{Method, Url};
use serde_json::Value;

use crate::{
    oidc_provider::{CLIENT_ID, CLIENT_SECRET, OidcProvider},
    support::{TestApp, error_code, parts},
};

/// `OIDC_REDIRECT_URL` as registered at the provider.
const CALLBACK: &str = "http://127.0.0.1:9/v1/auth/oidc/callback";

async fn app_for(issuer: &str) -> TestApp {
    TestApp::builder()
        .env("OIDC_ISSUER_URL", issuer)
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_REDIRECT_URL", CALLBACK)
        .spawn()
        .await
}

async fn setup() -> (OidcProvider, TestApp) {
    let provider = OidcProvider::start(&[CALLBACK]).await;
    let app = app_for(&provider.issuer).await;
    (provider, app)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query_of(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// `GET /v1/auth/oidc/authorize`: asserts the 302 and returns its Location.
async fn start_sign_in(app: &TestApp) -> String {
    let response = no_redirects()
        .get(app.url("/v1/auth/oidc/authorize"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 302, "{body}");
    location.expect("a Location header")
}

/// Opens the app's callback with the query the provider put on [`CALLBACK`].
async fn finish_sign_in(app: &TestApp, provider_redirect: &str) -> (u16, Value) {
    assert!(
        provider_redirect.starts_with(CALLBACK),
        "the provider redirected elsewhere: {provider_redirect}"
    );
    let query = Url::parse(provider_redirect)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_owned();
    let (status, _, body) = parts(app.get(&format!("/v1/auth/oidc/callback?{query}")).await).await;
    (status, body)
}

/// The whole dance for `user`; returns the callback's status and body.
async fn sign_in(provider: &OidcProvider, app: &TestApp, user: &str) -> (u16, Value) {
    let authorize = start_sign_in(app).await;
    let back = provider.authorize_in_browser(&authorize, user).await;
    finish_sign_in(app, &back).await
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Replaces one query parameter of `url`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == name {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

/// The provider itself: the headless browser signs a test user in and comes
/// back to the client's redirect URI with a code, or with `access_denied`.
#[tokio::test]
async fn oidc_test_provider_signs_a_user_in() {
    let provider = OidcProvider::start(&["http://127.0.0.1:1/cb"]).await;
    let authorize = format!(
        "{}/auth?response_type=code&client_id=rentify&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb\
         &scope=openid%20email&state=s1&nonce=n1\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        provider.issuer
    );
    let back = provider.authorize_in_browser(&authorize, "alice").await;
    let url = Url::parse(&back).unwrap();
    assert_eq!(url.path(), "/cb", "{back}");
    let query = query_of(&back);
    assert_eq!(query.get("state").map(String::as_str), Some("s1"), "{back}");
    assert!(query.get("code").is_some_and(|c| !c.is_empty()), "{back}");
    assert_eq!(query.get("iss"), Some(&provider.issuer), "{back}");

    let denied = provider.deny_in_browser(&authorize).await;
    assert_eq!(
        query_of(&denied).get("error").map(String::as_str),
        Some("access_denied"),
        "{denied}"
    );
}

#[tokio::test]
async fn oidc_authorize_redirects_to_the_provider_with_pkce_state_and_nonce() {
    let (provider, app) = setup().await;
    let location = start_sign_in(&app).await;
    assert!(
        location.starts_with(&format!("{}/auth?", provider.issuer)),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["redirect_uri"], CALLBACK);
    assert_eq!(query["scope"], "openid email profile");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "{location}");
    assert!(
        query["state"].len() >= 32 && query["nonce"].len() >= 32,
        "{location}"
    );
    assert_ne!(query["state"], query["nonce"]);

    let (verifier, ttl_secs): (String, f64) = sqlx::query_as(
        "SELECT code_verifier, extract(epoch FROM expires_at - created_at)::float8 \
         FROM oidc_logins WHERE state = $1 AND nonce = $2 AND used_at IS NULL",
    )
    .bind(&query["state"])
    .bind(&query["nonce"])
    .fetch_one(&app.db)
    .await
    .expect("the sign-in is stored under its state");
    assert_ne!(
        verifier, query["code_challenge"],
        "the verifier never leaves"
    );
    assert!((599.0..=601.0).contains(&ttl_secs), "{ttl_secs}");

    // Each sign-in gets its own state.
    let again = query_of(&start_sign_in(&app).await);
    assert_ne!(again["state"], query["state"]);
}

#[tokio::test]
async fn oidc_sign_in_creates_an_account_with_a_working_access_token() {
    let (provider, app) = setup().await;
    assert_eq!(count(&app, "users").await, 0);

    let (status, session) = sign_in(&provider, &app, "alice").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["object"], "session");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["user"]["email"], "alice@example.test");
    assert!(
        session["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    let token = session["access_token"].as_str().unwrap();
    let (status, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "alice@example.test");
    assert_eq!(me["id"], session["user"]["id"]);

    let (issuer, subject, user_id): (String, String, String) =
        sqlx::query_as("SELECT issuer, subject, user_id::text FROM user_identities")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(issuer, provider.issuer);
    assert_eq!(subject, "alice-0001");
    assert_eq!(Value::String(user_id), session["user"]["id"]);
    assert_eq!(count(&app, "users").await, 1);
    let unused: i64 = sqlx::query_scalar("SELECT count(*) FROM oidc_logins WHERE used_at IS NULL")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(unused, 0, "the state is spent");
}

#[tokio::test]
async fn oidc_signing_in_twice_links_to_the_same_user() {
    let (provider, app) = setup().await;
    let (status, first) = sign_in(&provider, &app, "alice").await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = sign_in(&provider, &app, "alice").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(first["user"]["id"], second["user"]["id"]);
    assert_ne!(
        first["refresh_token"], second["refresh_token"],
        "a new session"
    );

    let (status, other) = sign_in(&provider, &app, "bob").await;
    assert_eq!(status, 200, "{other}");
    assert_ne!(other["user"]["id"], first["user"]["id"]);
    assert_eq!(count(&app, "users").await, 2);
    assert_eq!(count(&app, "user_identities").await, 2);
}

/// The provider's claims can also come in the ID token itself (no userinfo call).
#[tokio::test]
async fn oidc_sign_in_reads_claims_from_the_id_token_too() {
    let provider = OidcProvider::start_with(&[CALLBACK], &[("ID_TOKEN_CLAIMS", "1")]).await;
    let app = app_for(&provider.issuer).await;
    let (status, session) = sign_in(&provider, &app, "bob").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["email"], "bob@example.test");
}

#[tokio::test]
async fn oidc_verified_email_links_to_the_existing_account() {
    let (provider, app) = setup().await;
    let (user_id, _) = app.user("alice@example.test").await;
    let (status, session) = sign_in(&provider, &app, "alice").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["id"], Value::String(user_id));
    assert_eq!(count(&app, "users").await, 1);
}

/// carol's provider does not vouch for her email: it must not take over the
/// account that already has it.
#[tokio::test]
async fn oidc_unverified_email_does_not_take_over_an_account() {
    let (provider, app) = setup().await;
    let (user_id, _) = app.user("carol@example.test").await;
    let (status, body) = sign_in(&provider, &app, "carol").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "email_taken");
    assert_eq!(count(&app, "user_identities").await, 0);
    let users: Vec<String> = sqlx::query_scalar("SELECT id::text FROM users")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(users, vec![user_id]);
}

#[tokio::test]
async fn oidc_replayed_state_is_rejected() {
    let (provider, app) = setup().await;
    let authorize = start_sign_in(&app).await;
    let back = provider.authorize_in_browser(&authorize, "alice").await;
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_oidc_state");
    assert_eq!(count(&app, "users").await, 1);
}

#[tokio::test]
async fn oidc_tampered_or_missing_state_is_rejected() {
    let (provider, app) = setup().await;
    let authorize = start_sign_in(&app).await;
    let back = provider.authorize_in_browser(&authorize, "alice").await;
    let state = query_of(&back)["state"].clone();

    let tampered = with_param(&back, "state", &format!("{state}x"));
    let (status, body) = finish_sign_in(&app, &tampered).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_oidc_state");

    let (status, _, body) = parts(app.get("/v1/auth/oidc/callback?code=abc").await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_oidc_state");
    assert_eq!(count(&app, "users").await, 0);

    // The genuine callback still works: a wrong state spends nothing.
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn oidc_expired_state_is_rejected() {
    let (provider, app) = setup().await;
    let authorize = start_sign_in(&app).await;
    let back = provider.authorize_in_browser(&authorize, "alice").await;
    sqlx::query("UPDATE oidc_logins SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_oidc_state");
    assert_eq!(count(&app, "users").await, 0);
}

#[tokio::test]
async fn oidc_forged_code_is_rejected_without_creating_a_user() {
    let (provider, app) = setup().await;
    let authorize = start_sign_in(&app).await;
    let back = provider.authorize_in_browser(&authorize, "alice").await;
    let forged = with_param(&back, "code", "forged-code-0000000000000000000000000000000");
    let (status, body) = finish_sign_in(&app, &forged).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "oidc_sign_in_failed");
    assert_eq!(count(&app, "users").await, 0);
    assert_eq!(count(&app, "user_identities").await, 0);

    // The state went with the failed attempt: the real code cannot follow it.
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "invalid_oidc_state");
    assert_eq!(count(&app, "users").await, 0);
}

/// A code issued for another sign-in (another PKCE verifier) does not redeem.
#[tokio::test]
async fn oidc_code_of_another_sign_in_is_rejected() {
    let (provider, app) = setup().await;
    let first = provider
        .authorize_in_browser(&start_sign_in(&app).await, "alice")
        .await;
    let second = provider
        .authorize_in_browser(&start_sign_in(&app).await, "bob")
        .await;
    // bob's state with alice's code.
    let swapped = with_param(&second, "code", &query_of(&first)["code"]);
    let (status, body) = finish_sign_in(&app, &swapped).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "oidc_sign_in_failed");
    assert_eq!(count(&app, "users").await, 0);
}

/// The ID token must carry the nonce of this sign-in (here the stored one is
/// changed after the redirect, as if the token belonged to another sign-in).
#[tokio::test]
async fn oidc_id_token_with_another_nonce_is_rejected() {
    let (provider, app) = setup().await;
    let back = provider
        .authorize_in_browser(&start_sign_in(&app).await, "alice")
        .await;
    sqlx::query("UPDATE oidc_logins SET nonce = 'another-sign-in'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "oidc_sign_in_failed");
    assert_eq!(count(&app, "users").await, 0);
}

/// The ID token's signature is checked against the provider's JWKS: here the
/// provider publishes an unrelated key under the signing key's `kid`.
#[tokio::test]
async fn oidc_id_token_that_does_not_verify_is_rejected() {
    let provider = OidcProvider::start_with(&[CALLBACK], &[("WRONG_JWKS", "1")]).await;
    let app = app_for(&provider.issuer).await;
    let (status, body) = sign_in(&provider, &app, "alice").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "oidc_sign_in_failed");
    assert_eq!(count(&app, "users").await, 0);
}

/// Discovery must name the configured issuer (here `localhost` instead of
/// `127.0.0.1`: same server, another issuer).
#[tokio::test]
async fn oidc_discovery_naming_another_issuer_is_refused() {
    let provider = OidcProvider::start(&[CALLBACK]).await;
    let app = app_for(&provider.issuer.replace("127.0.0.1", "localhost")).await;
    let (status, _, body) = parts(
        no_redirects()
            .get(app.url("/v1/auth/oidc/authorize"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "identity_provider_unavailable");
}

#[tokio::test]
async fn oidc_provider_denial_is_reported() {
    let (provider, app) = setup().await;
    let authorize = start_sign_in(&app).await;
    let back = provider.deny_in_browser(&authorize).await;
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "oidc_sign_in_failed");
    assert_eq!(
        body["error"]["details"][0]["error"], "access_denied",
        "{body}"
    );
    assert_eq!(count(&app, "users").await, 0);
}

#[tokio::test]
async fn oidc_unconfigured_answers_not_found() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/auth/oidc/authorize",
        "/v1/auth/oidc/callback?code=a&state=b",
    ] {
        let (status, _, body) =
            parts(no_redirects().get(app.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
}

#[tokio::test]
async fn oidc_unreachable_provider_is_503() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = app_for(&format!("http://127.0.0.1:{port}")).await;
    let (status, headers, body) = parts(
        no_redirects()
            .get(app.url("/v1/auth/oidc/authorize"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "identity_provider_unavailable");
    assert!(headers.contains_key("retry-after"));

    // And when it goes away between the redirect and the callback.
    let (provider, app) = setup().await;
    let back = provider
        .authorize_in_browser(&start_sign_in(&app).await, "alice")
        .await;
    drop(provider);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, body) = finish_sign_in(&app, &back).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "identity_provider_unavailable");
    assert_eq!(count(&app, "users").await, 0);
}
