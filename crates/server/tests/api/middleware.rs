use crate::support::TestApp;

#[tokio::test]
async fn request_ids_are_generated_when_absent_and_echoed_when_sent() {
    let app = TestApp::spawn().await;
    let response = app.get("/health/live").await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        uuid::Uuid::parse_str(&generated).unwrap().get_version_num(),
        7
    );

    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");

    // An unusable client id (too long, or with spaces) is replaced, not echoed.
    for bad in ["x".repeat(200), "has spaces".to_string()] {
        let response = app
            .client
            .get(app.url("/health/live"))
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert!(
            uuid::Uuid::parse_str(echoed).is_ok(),
            "{bad:?} was replaced by a generated id, got {echoed}"
        );
    }

    // Errors carry it too.
    let response = app
        .client
        .get(app.url("/v1/nope"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn security_headers_are_set() {
    let app = TestApp::spawn().await;
    let response = app.get("/health/live").await;
    let h = response.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::builder()
        .env("CORS_ALLOWED_ORIGINS", "https://app.rentify.test")
        .spawn()
        .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/health/live"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://app.rentify.test").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.rentify.test"
    );
    let denied = preflight("https://evil.test").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn the_docs_page_and_openapi_document_are_served_offline() {
    let app = TestApp::spawn().await;
    let spec: serde_json::Value = app.get("/v1/openapi.json").await.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/health/ready"].is_object());

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "docs page: {html}");
    // Every script and stylesheet it references is served by us, not a CDN.
    assert!(
        !html.contains("https://"),
        "docs must not load remote assets: {html}"
    );
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let response = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
    }
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/v1/openapi.json"), "{init}");
}
