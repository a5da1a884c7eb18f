//! The same scenarios against both stores: in-process and Redis.

use serde_json::json;

use crate::support::{TestApp, error_code, parts, redis_url};
use crate::widgets;

#[derive(Clone, Copy, Debug)]
enum Store {
    Memory,
    Redis,
}

async fn app(store: Store) -> TestApp {
    let mut builder = TestApp::builder()
        .routes(widgets::routes())
        .env("RATE_LIMITS", "on")
        .env("RATE_LIMIT_READ", "3/min")
        .env("RATE_LIMIT_WRITE", "2/min")
        .env("RATE_LIMIT_BLOCK_AFTER", "3")
        .env("TRUST_PROXY_HEADERS", "true");
    if let Store::Redis = store {
        builder = builder.env("REDIS_URL", redis_url());
    }
    let app = builder.spawn().await;
    widgets::install(&app.db).await;
    app
}

/// A client address unique to this test run (Redis outlives tests).
fn client_ip() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("10.{}.{}.{}", (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

async fn get_as(app: &TestApp, ip: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/widgets"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> u64 {
    h.get(name)
        .unwrap_or_else(|| panic!("{name} missing: {h:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn limits_then_blocks_repeat_offenders(store: Store) {
    let app = app(store).await;
    let ip = client_ip();
    for expected_remaining in [2, 1, 0] {
        let (status, headers, _) = parts(get_as(&app, &ip).await).await;
        assert_eq!(status, 200, "{store:?}");
        assert_eq!(header(&headers, "ratelimit-limit"), 3);
        assert_eq!(
            header(&headers, "ratelimit-remaining"),
            expected_remaining,
            "{store:?}"
        );
        assert!(header(&headers, "ratelimit-reset") <= 60);
    }
    let (status, headers, body) = parts(get_as(&app, &ip).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (429, "rate_limited"),
        "{store:?}"
    );
    let retry = header(&headers, "retry-after");
    assert!(
        (1..=20).contains(&retry),
        "one request's worth of time (20 s), got {retry}"
    );
    assert_eq!(body["error"]["details"][0]["blocked"], false);

    // Another client is unaffected.
    assert_eq!(get_as(&app, &client_ip()).await.status(), 200);

    // Keep hammering: the third strike blocks for a minute.
    get_as(&app, &ip).await;
    let (status, headers, body) = parts(get_as(&app, &ip).await).await;
    assert_eq!(status, 429);
    assert_eq!(
        body["error"]["details"][0]["blocked"], true,
        "{store:?}: {body}"
    );
    let block = header(&headers, "retry-after");
    assert!(
        (55..=60).contains(&block),
        "first block is 60 s, got {block}"
    );
    // Health checks are never limited.
    for _ in 0..5 {
        assert_eq!(
            app.client
                .get(app.url("/health/live"))
                .header("x-forwarded-for", &ip)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

async fn writes_have_their_own_quota(store: Store) {
    let app = app(store).await;
    let ip = client_ip();
    let post = || {
        app.client
            .post(app.url("/v1/widgets"))
            .header("x-forwarded-for", &ip)
            .json(&json!({"name": "w"}))
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 201);
    assert_eq!(post().await.unwrap().status(), 201);
    assert_eq!(post().await.unwrap().status(), 429);
    // Reads still have their own allowance.
    assert_eq!(get_as(&app, &ip).await.status(), 200);
}

#[tokio::test]
async fn memory_store_limits_then_blocks_repeat_offenders() {
    limits_then_blocks_repeat_offenders(Store::Memory).await;
}

#[tokio::test]
async fn redis_store_limits_then_blocks_repeat_offenders() {
    limits_then_blocks_repeat_offenders(Store::Redis).await;
}

#[tokio::test]
async fn memory_store_gives_writes_their_own_quota() {
    writes_have_their_own_quota(Store::Memory).await;
}

#[tokio::test]
async fn redis_store_gives_writes_their_own_quota() {
    writes_have_their_own_quota(Store::Redis).await;
}

#[tokio::test]
async fn redis_limits_hold_across_instances() {
    let first = app(Store::Redis).await;
    let second = app(Store::Redis).await;
    let ip = client_ip();
    assert_eq!(get_as(&first, &ip).await.status(), 200);
    assert_eq!(get_as(&second, &ip).await.status(), 200);
    assert_eq!(get_as(&first, &ip).await.status(), 200);
    assert_eq!(
        get_as(&second, &ip).await.status(),
        429,
        "the quota is shared through Redis"
    );
}

#[tokio::test]
async fn limits_can_be_switched_off() {
    let app = TestApp::builder()
        .routes(widgets::routes())
        .env("RATE_LIMITS", "off")
        .env("RATE_LIMIT_READ", "1/min")
        .spawn()
        .await;
    widgets::install(&app.db).await;
    for _ in 0..5 {
        let response = app.get("/v1/widgets").await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit-limit").is_none());
    }
}
