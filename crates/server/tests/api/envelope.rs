use serde_json::json;

use crate::support::{TestApp, error_code, parts};
use crate::widgets;

async fn app() -> TestApp {
    let app = TestApp::builder()
        .routes(widgets::routes())
        .env("REQUEST_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    widgets::install(&app.db).await;
    app
}

#[tokio::test]
async fn unknown_routes_are_404_not_found_in_the_envelope() {
    let app = app().await;
    let (status, headers, body) = parts(app.get("/v1/no-such-thing").await).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn unknown_ids_and_unparseable_ids_are_404() {
    let app = app().await;
    let (status, _, body) = parts(
        app.get(&format!("/v1/widgets/{}", uuid::Uuid::now_v7()))
            .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, _, body) = parts(app.get("/v1/widgets/not-a-uuid").await).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}

#[tokio::test]
async fn wrong_method_is_405_in_the_envelope() {
    let app = app().await;
    let response = app
        .client
        .delete(app.url("/v1/widgets"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = parts(response).await;
    assert_eq!(status, 405);
    assert_eq!(error_code(&body), "method_not_allowed");
    assert!(
        headers.get("allow").is_some(),
        "Allow header kept: {headers:?}"
    );
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = app().await;
    let response = app.post_raw("/v1/widgets", "{\"name\": ", &[]).await;
    let (status, _, body) = parts(response).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_json"));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = app().await;
    let response = app
        .client
        .post(app.url("/v1/widgets"))
        .body("name=x")
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!((status, error_code(&body)), (415, "unsupported_media_type"));
}

#[tokio::test]
async fn validation_lists_one_detail_per_field() {
    let app = app().await;
    let (status, _, body) = parts(
        app.post_json("/v1/widgets", &json!({"name": "", "size": 99}), &[])
            .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    let details = body["error"]["details"].as_array().unwrap();
    let fields: Vec<&str> = details
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "size"]);
    for detail in details {
        assert!(
            detail["code"].is_string() && detail["message"].is_string(),
            "{detail}"
        );
    }

    // Wrong types and missing or unknown fields name the field too.
    let (status, _, body) =
        parts(app.post_json("/v1/widgets", &json!({"size": 2}), &[]).await).await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    assert_eq!(body["error"]["details"][0]["field"], "name");
    assert_eq!(body["error"]["details"][0]["code"], "required");
    let (_, _, body) = parts(app.post_json("/v1/widgets", &json!({"name": 5}), &[]).await).await;
    assert_eq!(body["error"]["details"][0]["field"], "name");
    assert_eq!(body["error"]["details"][0]["code"], "invalid_type");
    let (_, _, body) = parts(
        app.post_json("/v1/widgets", &json!({"name": "a", "colour": "red"}), &[])
            .await,
    )
    .await;
    assert_eq!(body["error"]["details"][0]["field"], "colour");
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413() {
    let app = app().await;
    let big = json!({"name": "x".repeat(1024 * 1024 + 10)});
    let (status, _, body) = parts(app.post_json("/v1/widgets", &big, &[]).await).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));

    // Also when the client streams it without a Content-Length.
    let chunks =
        futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let response = app
        .client
        .post(app.url("/v1/widgets"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
}

#[tokio::test]
async fn a_panic_is_a_500_that_leaks_nothing() {
    let app = app().await;
    let (status, _, body) = parts(app.get("/v1/test/panic").await).await;
    assert_eq!((status, error_code(&body)), (500, "internal_error"));
    assert!(!body.to_string().contains("secret-internal-detail"));
    // The server keeps serving.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_504_request_timeout() {
    let app = app().await;
    let (status, _, body) = parts(app.get("/v1/test/sleep/3000").await).await;
    assert_eq!((status, error_code(&body)), (504, "request_timeout"));
    assert_eq!(app.get("/v1/test/sleep/10").await.status(), 200);
}
