//! Access tokens: EdDSA JWTs with `kid`, verifiable from the JWKS; forged,
//! expired, `alg: none`, algorithm-confused, wrong-issuer and
//! wrong-audience tokens are refused with 401 `invalid_token`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rentify_identity::crypto::FieldCipher;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code};

/// The app's real signing key, decrypted with the development PII key the
/// tests run with, so a test can mint tokens that differ in one claim only.
async fn real_key(app: &TestApp) -> (String, EncodingKey) {
    let (kid, sealed): (String, Vec<u8>) = sqlx::query_as(
        "SELECT kid, private_key_ciphertext FROM signing_keys WHERE retired_at IS NULL",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let config =
        rentify_platform::config::Config::from_vars(Vec::<(String, String)>::new()).unwrap();
    let der = FieldCipher::from_config(&config)
        .unwrap()
        .decrypt("signing_keys.private_key", &sealed)
        .unwrap();
    (kid, EncodingKey::from_ed_der(&der))
}

fn claims(sub: &str, iss: &str, aud: &str, exp_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + exp_offset,
        "jti": uuid::Uuid::now_v7(), "sid": uuid::Uuid::now_v7(), "roles": ["renter", "admin"],
    })
}

async fn me_with(app: &TestApp, token: &str) -> (u16, Value) {
    app.call_parts(Method::GET, "/v1/users/me", Some(token), None)
        .await
}

#[tokio::test]
async fn the_jwks_verifies_issued_tokens() {
    let app = TestApp::spawn().await;
    let session = app.register("jw@example.com").await;
    let token = session["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let (status, jwks) = app
        .call_parts(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(status, 200);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| Some(k["kid"].as_str().unwrap()) == header.kid.as_deref())
        .expect("the token's kid is published");
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(key.get("d").is_none(), "no private part in the JWKS");
    let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["rentify"]);
    validation.set_issuer(&["http://localhost:8080"]);
    let data = jsonwebtoken::decode::<Value>(token, &decoding, &validation).unwrap();
    assert_eq!(data.claims["sub"], session["user"]["id"]);
    assert_eq!(data.claims["roles"], json!(["renter"]));
    let lifetime = data.claims["exp"].as_i64().unwrap() - data.claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_invalid_token() {
    let app = TestApp::spawn().await;
    let (id, good) = app.user("victim@example.com").await;
    assert_eq!(me_with(&app, &good).await.0, 200);
    let (kid, key) = real_key(&app).await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let iss = "http://localhost:8080";

    // Control: the real key with the right claims is accepted, so the
    // refusals below are about the one thing each changes.
    let control = jsonwebtoken::encode(&header, &claims(&id, iss, "rentify", 600), &key).unwrap();
    assert_eq!(me_with(&app, &control).await.0, 200);

    let expired = jsonwebtoken::encode(&header, &claims(&id, iss, "rentify", -120), &key).unwrap();
    let wrong_issuer = jsonwebtoken::encode(
        &header,
        &claims(&id, "https://evil.example", "rentify", 600),
        &key,
    )
    .unwrap();
    let wrong_audience =
        jsonwebtoken::encode(&header, &claims(&id, iss, "another-service", 600), &key).unwrap();

    // Signed by another Ed25519 key under the real kid.
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let other = ed25519_dalek::SigningKey::from_bytes(&seed);
    let other_der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).unwrap();
    let forged = jsonwebtoken::encode(
        &header,
        &claims(&id, iss, "rentify", 600),
        &EncodingKey::from_ed_der(other_der.as_bytes()),
    )
    .unwrap();

    // `alg: none`, unsigned.
    let body = URL_SAFE_NO_PAD.encode(claims(&id, iss, "rentify", 600).to_string());
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string()),
        body
    );

    // Algorithm confusion: HS256 keyed with the public key from the JWKS.
    let (_, jwks) = app
        .call_parts(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &claims(&id, iss, "rentify", 600),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();

    // A good token with a tampered payload (claims more roles).
    let mut pieces: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&pieces[1]).unwrap()).unwrap();
    payload["roles"] = json!(["renter", "admin"]);
    pieces[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = pieces.join(".");

    for (name, token) in [
        ("expired", expired),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("forged", forged),
        ("alg none", none),
        ("HS256 confusion", confused),
        ("tampered", tampered),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let (status, body) = me_with(&app, &token).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(error_code(&body), "invalid_token", "{name}");
    }
    // A malformed Authorization header is refused too, on any route.
    let response = app
        .client
        .get(app.url("/v1/users/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // No credentials at all: 401 unauthenticated.
    let (status, body) = app
        .call_parts(Method::GET, "/v1/users/me", None, None)
        .await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
}

#[tokio::test]
async fn tokens_survive_a_key_rotation_until_they_expire() {
    let app = TestApp::spawn().await;
    let (_, before) = app.user("rot@example.com").await;
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    // What `rentify keys rotate` does, through the library.
    let config = rentify_platform::config::Config::from_vars(vec![(
        "DATABASE_URL".to_string(),
        app.database.url.clone(),
    )])
    .unwrap();
    let state = rentify_platform::PlatformState::build(config, app.db.clone())
        .await
        .unwrap();
    let identity = rentify_identity::Identity::init(&state).await.unwrap();
    let new_kid = identity.keys().rotate().await.unwrap();
    assert_ne!(old_kid, new_kid);
    // The JWKS is read fresh: both keys are published at once.
    let (status, jwks) = app
        .call_parts(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    // The running app now signs with the new key; old tokens stay valid.
    let session = app.register("rot2@example.com").await;
    let after = session["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(after).unwrap().kid.unwrap(),
        new_kid
    );
    assert_eq!(me_with(&app, &before).await.0, 200, "old tokens stay valid");
    assert_eq!(me_with(&app, after).await.0, 200);
}
