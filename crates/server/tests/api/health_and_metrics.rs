use sqlx::Executor;

use crate::support::{TestApp, error_code, parts, redis_url};

#[tokio::test]
async fn live_and_ready_answer_ok() {
    let app = TestApp::spawn().await;
    let (status, _, body) = parts(app.get("/health/live").await).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _, body) = parts(app.get("/health/ready").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["postgres"], "ok");
    assert!(
        body["checks"].get("redis").is_none(),
        "redis is not configured"
    );
}

#[tokio::test]
async fn ready_checks_redis_when_configured() {
    let app = TestApp::builder()
        .env("REDIS_URL", redis_url())
        .spawn()
        .await;
    let (status, _, body) = parts(app.get("/health/ready").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["redis"], "ok");
}

#[tokio::test]
async fn ready_is_503_naming_postgres_when_the_database_goes_away() {
    let app = TestApp::spawn().await;
    // Kill every connection and forbid new ones: PostgreSQL is "down" for us.
    let mut admin = sqlx::PgConnection::connect_with(
        &app.db
            .connect_options()
            .as_ref()
            .clone()
            .database("postgres"),
    )
    .await
    .unwrap();
    let name = &app.database.name;
    admin
        .execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false").as_str())
        .await
        .unwrap();
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            .as_str(),
        )
        .await
        .unwrap();

    let (status, headers, body) = parts(app.get("/health/ready").await).await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&body), "dependency_unavailable");
    assert_eq!(body["error"]["details"][0]["dependency"], "postgres");
    assert!(headers.get("retry-after").is_some());
    // Liveness does not depend on the database.
    assert_eq!(app.get("/health/live").await.status(), 200);

    admin
        .execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true").as_str())
        .await
        .unwrap();
    // Pooled connections are not pinged on every use (db::connect): each
    // dead one still in the pool may fail one request, with a 503, before
    // the pool drops it. Within the pool's size the service is back.
    let mut statuses = Vec::new();
    for _ in 0..=10 {
        let status = app.get("/health/ready").await.status().as_u16();
        statuses.push(status);
        if status == 200 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn metrics_count_requests_per_route_template() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.get("/health/live").await;
    }
    app.get("/v1/random/path/123").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains("route=\"/health/live\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no counter for /health/live in:\n{text}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "histogram missing"
    );
    assert!(
        text.contains("route=\"unmatched\""),
        "unknown paths share one label"
    );
    assert!(
        !text.contains("/v1/random/path/123"),
        "raw paths never become labels"
    );
}

use sqlx::Connection;
