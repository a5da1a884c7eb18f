use std::collections::HashSet;

use crate::support::{TestApp, error_code, parts};
use crate::widgets;

#[tokio::test]
async fn cursors_walk_every_row_once_in_order() {
    let app = TestApp::builder().routes(widgets::routes()).spawn().await;
    widgets::install(&app.db).await;
    // 45 rows, several sharing a timestamp, so the id tie-breaker matters.
    sqlx::query(
        "INSERT INTO widgets (id, name, created_at)
         SELECT gen_random_uuid(), 'w' || n, timestamptz '2026-01-01' + (n / 3) * interval '1 minute'
           FROM generate_series(1, 45) n",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let mut seen = HashSet::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    let mut previous: Option<(String, String)> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/widgets?limit=20&cursor={c}"),
            None => "/v1/widgets?limit=20".to_string(),
        };
        let (status, _, body) = parts(app.get(&path).await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        let data = body["data"].as_array().unwrap();
        sizes.push(data.len());
        for row in data {
            let key = (
                row["created_at"].as_str().unwrap().to_string(),
                row["id"].as_str().unwrap().to_string(),
            );
            if let Some(prev) = &previous {
                assert!(key < *prev, "descending order: {key:?} after {prev:?}");
            }
            previous = Some(key);
            assert!(
                seen.insert(row["id"].as_str().unwrap().to_string()),
                "duplicate row"
            );
        }
        assert_eq!(
            body["has_more"].as_bool().unwrap(),
            body["next_cursor"].is_string()
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(sizes, [20, 20, 5]);
    assert_eq!(seen.len(), 45);

    let (_, _, body) = parts(app.get("/v1/widgets").await).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 20, "default limit");
}

#[tokio::test]
async fn bad_cursors_and_limits_are_400() {
    let app = TestApp::builder().routes(widgets::routes()).spawn().await;
    widgets::install(&app.db).await;
    let (status, _, body) = parts(app.get("/v1/widgets?cursor=not-a-cursor").await).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_cursor"));
    for limit in ["0", "51", "-1", "ten"] {
        let (status, _, body) = parts(app.get(&format!("/v1/widgets?limit={limit}")).await).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "validation_failed"),
            "limit={limit}"
        );
        assert_eq!(body["error"]["details"][0]["field"], "limit");
    }
}
