//! Sign-in with an external OpenID Connect provider, against a real provider
//! (`scripts/oidc-provider`, the npm package `oidc-provider`) run locally.

use crate::oidc_provider::OidcProvider;

/// The provider itself: the headless browser signs a test user in and comes
/// back to the client's redirect URI with a code.
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
    let url = reqwest::Url::parse(&back).unwrap();
    assert_eq!(url.path(), "/cb", "{back}");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some("s1"), "{back}");
    assert!(query.get("code").is_some_and(|c| !c.is_empty()), "{back}");
    assert_eq!(query.get("iss"), Some(&provider.issuer), "{back}");

    let denied = provider.deny_in_browser(&authorize).await;
    assert!(denied.contains("error=access_denied"), "{denied}");
}
