use serde_json::json;

use crate::support::{TestApp, error_code, parts};
use crate::widgets;

async fn app() -> TestApp {
    let app = TestApp::builder().routes(widgets::routes()).spawn().await;
    widgets::install(&app.db).await;
    app
}

async fn widget_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM widgets")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_replays_the_first_response_without_a_second_effect() {
    let app = app().await;
    let key = [("idempotency-key", "k-1"), ("x-test-user", "alice")];
    let (s1, h1, b1) = parts(
        app.post_json("/v1/widgets", &json!({"name": "lamp"}), &key)
            .await,
    )
    .await;
    let (s2, h2, b2) = parts(
        app.post_json("/v1/widgets", &json!({"name": "lamp"}), &key)
            .await,
    )
    .await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(b1, b2);
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(widget_count(&app).await, 1);
    let fetched: serde_json::Value = app
        .get(&format!("/v1/widgets/{}", b1["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&fetched["id"], &fetched["object"]),
        (&b1["id"], &json!("widget"))
    );
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'widget.created'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        events, 1,
        "the outbox event is written once, with the effect"
    );

    // The same key in another principal's space is a different request.
    let other = [("idempotency-key", "k-1"), ("x-test-user", "bob")];
    let (s3, _, b3) = parts(
        app.post_json("/v1/widgets", &json!({"name": "lamp"}), &other)
            .await,
    )
    .await;
    assert_eq!(s3, 201);
    assert_ne!(b3["id"], b1["id"]);
    // Without a key, every request is new.
    app.post_json("/v1/widgets", &json!({"name": "lamp"}), &[])
        .await;
    app.post_json("/v1/widgets", &json!({"name": "lamp"}), &[])
        .await;
    assert_eq!(widget_count(&app).await, 4);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = app().await;
    let key = [("idempotency-key", "k-2")];
    assert_eq!(
        app.post_json("/v1/widgets", &json!({"name": "lamp"}), &key)
            .await
            .status(),
        201
    );
    let (status, _, body) = parts(
        app.post_json("/v1/widgets", &json!({"name": "sofa"}), &key)
            .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (422, "idempotency_key_reused"));
    // Key order and whitespace do not make a body different.
    let key3 = [("idempotency-key", "k-3")];
    let same = app
        .post_raw("/v1/widgets", r#"{"name":"desk","size":2}"#, &key3)
        .await;
    assert_eq!(same.status(), 201);
    let reordered = app
        .post_raw("/v1/widgets", r#"{ "size": 2, "name": "desk" }"#, &key3)
        .await;
    assert_eq!(reordered.status(), 201);
    assert_eq!(reordered.headers()["idempotent-replayed"], "true");
    assert_eq!(widget_count(&app).await, 2);
}

/// A replay (or a refusal) leaves the key free at once: the next request
/// with the key, sent the moment the answer arrives, is judged on its body
/// and never told that the key is in progress. Eight clients at once, so
/// the server is busy when it answers.
#[tokio::test]
async fn right_after_a_replay_the_key_is_not_in_progress() {
    let app = app().await;
    let lamp = json!({"name": "lamp"});
    let client = |n: usize| {
        let (app, lamp) = (&app, &lamp);
        async move {
            let key = format!("k-after-replay-{n}");
            let key = [("idempotency-key", key.as_str())];
            assert_eq!(app.post_json("/v1/widgets", lamp, &key).await.status(), 201);
            for _ in 0..25 {
                let replay = app.post_json("/v1/widgets", lamp, &key).await;
                assert_eq!(replay.status(), 201);
                assert_eq!(replay.headers()["idempotent-replayed"], "true");
                let (status, _, body) = parts(
                    app.post_json("/v1/widgets", &json!({"name": "sofa"}), &key)
                        .await,
                )
                .await;
                assert_eq!((status, error_code(&body)), (422, "idempotency_key_reused"));
            }
        }
    };
    futures::future::join_all((0..8).map(client)).await;
    assert_eq!(widget_count(&app).await, 8);
}

#[tokio::test]
async fn a_concurrent_request_with_a_key_in_flight_is_409() {
    let app = app().await;
    let key = [("idempotency-key", "k-race")];
    let body = json!({"name": "slow", "hold_ms": 1500});
    let first = app.post_json("/v1/widgets", &body, &key);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app.post_json("/v1/widgets", &body, &key).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.status(), 201);
    let (status, headers, body_json) = parts(second).await;
    assert_eq!(
        (status, error_code(&body_json)),
        (409, "idempotency_key_in_progress")
    );
    assert!(headers.get("retry-after").is_some());
    // Once the first finished, the retry replays it.
    let retry = app.post_json("/v1/widgets", &body, &key).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(widget_count(&app).await, 1);
}

#[tokio::test]
async fn many_concurrent_retries_create_exactly_one_resource() {
    let app = app().await;
    let key = [("idempotency-key", "k-storm")];
    let body = json!({"name": "storm"});
    let requests = (0..20).map(|_| app.post_json("/v1/widgets", &body, &key));
    let responses = futures::future::join_all(requests).await;
    let mut created_ids = std::collections::HashSet::new();
    for response in responses {
        let (status, _, body) = parts(response).await;
        match status {
            201 => {
                created_ids.insert(body["id"].as_str().unwrap().to_string());
            }
            409 => assert_eq!(error_code(&body), "idempotency_key_in_progress"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created_ids.len(), 1, "every 201 is the same widget");
    assert_eq!(widget_count(&app).await, 1);
}

#[tokio::test]
async fn a_failed_request_does_not_burn_the_key_and_expired_keys_are_forgotten() {
    let app = app().await;
    let key = [("idempotency-key", "k-4")];
    let (status, _, _) = parts(
        app.post_json("/v1/widgets", &json!({"name": ""}), &key)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        app.post_json("/v1/widgets", &json!({"name": "ok"}), &key)
            .await
            .status(),
        201
    );

    // Past the TTL the key is new again (and the purge removes it).
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let again = app
        .post_json("/v1/widgets", &json!({"name": "ok"}), &key)
        .await;
    assert_eq!(again.status(), 201);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(widget_count(&app).await, 2);

    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    let purged = rentify_platform::idempotency::purge_expired(&mut conn, 24)
        .await
        .unwrap();
    assert_eq!(purged, 1);
}

#[tokio::test]
async fn malformed_keys_are_rejected() {
    let app = app().await;
    let long = "k".repeat(256);
    let (status, _, body) = parts(
        app.post_json(
            "/v1/widgets",
            &json!({"name": "x"}),
            &[("idempotency-key", &long)],
        )
        .await,
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    assert_eq!(body["error"]["details"][0]["field"], "Idempotency-Key");
}
