use std::time::Duration;

use rentify_platform::{
    jobs::{Job, PlatformJobs, PurgeIdempotencyKeys, To, Workers},
    outbox::{self, NewEvent},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::support::TestDatabase;

async fn pool(database: &TestDatabase) -> PgPool {
    PgPool::connect(&database.url).await.unwrap()
}

#[tokio::test]
async fn events_exist_only_if_their_transaction_commits() {
    let database = TestDatabase::create().await;
    let db = pool(&database).await;
    let event = || NewEvent {
        event_type: "booking.requested",
        aggregate_type: "booking",
        aggregate_id: "b-1".into(),
        payload: serde_json::json!({"amount": 100}),
    };
    let mut tx = db.begin().await.unwrap();
    outbox::record(&mut tx, event()).await.unwrap();
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let mut tx = db.begin().await.unwrap();
    let id = outbox::record(&mut tx, event()).await.unwrap();
    tx.commit().await.unwrap();
    let (kind, position): (String, i64) =
        sqlx::query_as("SELECT type, position FROM events WHERE id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(kind, "booking.requested");
    assert!(position > 0);

    // The database refuses malformed event types.
    let mut tx = db.begin().await.unwrap();
    let bad = NewEvent {
        event_type: "Not An Event",
        aggregate_type: "x",
        aggregate_id: "1".into(),
        payload: (),
    };
    assert!(outbox::record(&mut tx, bad).await.is_err());
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Mark {
    label: String,
    /// Fail this many attempts before succeeding.
    fail_times: i64,
}

async fn marking_job(db: PgPool) -> Job<Mark, ()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS marks (label text, attempt int)")
        .execute(&db)
        .await
        .unwrap();
    Job::builder()
        .step(|mut cx, mark: Mark| async move {
            let attempts: i64 =
                sqlx::query_scalar("SELECT count(*) FROM marks WHERE label = $1 || ':attempt'")
                    .bind(&mark.label)
                    .fetch_one(&mut *cx.tx)
                    .await?;
            if attempts < mark.fail_times {
                return Err(underway::task::Error::Retryable(format!(
                    "attempt {} fails on purpose",
                    attempts + 1
                )));
            }
            sqlx::query("INSERT INTO marks VALUES ($1, $2)")
                .bind(&mark.label)
                .bind(attempts as i32 + 1)
                .execute(&mut *cx.tx)
                .await?;
            cx.tx.commit().await?;
            To::done()
        })
        .name("test.mark")
        .pool(db)
        .build()
        .await
        .unwrap()
}

async fn wait_for(db: &PgPool, sql: &str, expected: i64) {
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(db).await.unwrap();
        if n == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for `{sql}` = {expected}");
}

#[tokio::test]
async fn jobs_are_enqueued_with_the_transaction_and_survive_until_a_worker_runs() {
    let database = TestDatabase::create().await;
    let db = pool(&database).await;
    let job = marking_job(db.clone()).await;

    let mut tx = db.begin().await.unwrap();
    job.enqueue_using(
        &mut *tx,
        &Mark {
            label: "rolled-back".into(),
            fail_times: 0,
        },
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO marks VALUES ('business-change', 0)")
        .execute(&mut *tx)
        .await
        .unwrap();
    job.enqueue_using(
        &mut *tx,
        &Mark {
            label: "committed".into(),
            fail_times: 0,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // No worker yet: the job waits durably in PostgreSQL. A worker started
    // later (as after a restart) picks it up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM marks WHERE label = 'committed'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(pending, 0);

    let mut workers = Workers::new(2, Duration::from_millis(200));
    workers.spawn(&job);
    wait_for(
        &db,
        "SELECT count(*) FROM marks WHERE label = 'committed'",
        1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ghost: i64 = sqlx::query_scalar("SELECT count(*) FROM marks WHERE label = 'rolled-back'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        ghost, 0,
        "a job enqueued in a rolled-back transaction never runs"
    );
    workers.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn failing_jobs_are_retried() {
    let database = TestDatabase::create().await;
    let db = pool(&database).await;
    let job = marking_job(db.clone()).await;
    job.enqueue(&Mark {
        label: "flaky".into(),
        fail_times: 0,
    })
    .await
    .unwrap();
    // A job that fails: its attempts are visible in underway's attempt table.
    job.enqueue(&Mark {
        label: "always-fails".into(),
        fail_times: 1_000,
    })
    .await
    .unwrap();
    let mut workers = Workers::new(2, Duration::from_millis(200));
    workers.spawn(&job);
    wait_for(&db, "SELECT count(*) FROM marks WHERE label = 'flaky'", 1).await;
    // underway records each attempt; the failing task is retried (first
    // retry after ~1 s back-off).
    for _ in 0..100 {
        let attempts: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM underway.task_attempt
              WHERE task_queue_name = 'test.mark' AND error_message LIKE '%on purpose%'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if attempts >= 2 {
            workers.shutdown(Duration::from_secs(5)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT state::text, error_message FROM underway.task_attempt")
            .fetch_all(&db)
            .await
            .unwrap();
    panic!("the failing job was not retried: {attempts:?}");
}

#[tokio::test]
async fn the_platform_purge_job_removes_expired_idempotency_keys() {
    let database = TestDatabase::create().await;
    let db = pool(&database).await;
    sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, method, path, fingerprint, response_status, response_body, created_at)
         VALUES ('u', 'old', 'POST', '/v1/x', '\\x00', 201, '{}', now() - interval '30 hours'),
                ('u', 'new', 'POST', '/v1/x', '\\x00', 201, '{}', now())",
    )
    .execute(&db)
    .await
    .unwrap();
    let jobs = PlatformJobs::build(db.clone(), 24).await.unwrap();
    jobs.purge_idempotency_keys
        .enqueue(&PurgeIdempotencyKeys { ttl_hours: 24 })
        .await
        .unwrap();
    let mut workers = Workers::new(1, Duration::from_millis(200));
    jobs.spawn(&mut workers);
    wait_for(&db, "SELECT count(*) FROM idempotency_keys", 1).await;
    let left: String = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, "new");
    workers.shutdown(Duration::from_secs(5)).await;
}
