//! Event consumers: the same scenarios in-process (on the outbox) and on
//! NATS JetStream, plus what only one mode has (late commits, priorities,
//! backpressure, retention).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rentify_events::{
    Consumer, Context, Event, Handler, Priority, Runtime, Settings, retry::Backoff,
};
use rentify_platform::outbox::{self, NewEvent};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{TestApp, TestDatabase, error_code, parts};

/// One request: status, headers and JSON body.
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    parts(
        app.call(method.parse().unwrap(), path, Some(token), body)
            .await,
    )
    .await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    InProcess,
    JetStream,
}

fn nats_url() -> String {
    std::env::var("TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

/// Fast settings; on JetStream a stream and subjects of the test's own.
fn settings(max_attempts: u32) -> Settings {
    let suffix = Uuid::new_v4().simple().to_string()[..12].to_string();
    Settings {
        batch_size: 50,
        nats_stream: format!("T_{suffix}"),
        nats_subject_prefix: format!("t{suffix}"),
        poll_interval: Duration::from_millis(10),
        max_attempts,
        retry: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    }
}

async fn start(
    mode: Mode,
    pool: &PgPool,
    consumers: Vec<Consumer>,
    settings: &Settings,
) -> Runtime {
    let url = nats_url();
    let nats = (mode == Mode::JetStream).then_some(url.as_str());
    Runtime::start(pool.clone(), consumers, settings.clone(), nats)
        .await
        .expect("the consumers start")
}

/// Records `count` events of `event_type`, one transaction each.
async fn record(pool: &PgPool, event_type: &str, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..count {
        let mut tx = pool.begin().await.unwrap();
        ids.push(
            outbox::record(
                &mut tx,
                NewEvent {
                    event_type,
                    aggregate_type: "test",
                    aggregate_id: i.to_string(),
                    payload: json!({ "i": i }),
                },
            )
            .await
            .unwrap(),
        );
        tx.commit().await.unwrap();
    }
    ids
}

/// A handler whose effect is a counter per event (not idempotent by
/// itself: a second run would count 2), which can fail or panic on demand.
#[derive(Clone)]
struct Counter {
    consumer: &'static str,
    /// Fail this many attempts of every event before succeeding.
    fail_first: u32,
    /// Panic on events with this payload `i` while `broken` is set.
    panic_on: Option<i64>,
    broken: Arc<AtomicBool>,
    delay: Duration,
}

impl Counter {
    fn new(consumer: &'static str) -> Self {
        Self {
            consumer,
            fail_first: 0,
            panic_on: None,
            broken: Arc::new(AtomicBool::new(true)),
            delay: Duration::ZERO,
        }
    }
}

#[async_trait::async_trait]
impl Handler for Counter {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        if cx.attempt < self.fail_first {
            anyhow::bail!("attempt {} fails on purpose", cx.attempt + 1);
        }
        if self.panic_on.is_some()
            && self.panic_on == event.payload["i"].as_i64()
            && self.broken.load(Ordering::SeqCst)
        {
            panic!("this event breaks the handler");
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        sqlx::query(
            "INSERT INTO effects (consumer, event_id, n) VALUES ($1, $2, 1)
             ON CONFLICT (consumer, event_id) DO UPDATE SET n = effects.n + 1, at = clock_timestamp()",
        )
        .bind(self.consumer)
        .bind(event.id)
        .execute(&mut *cx.tx)
        .await?;
        Ok(())
    }
}

async fn effects_table(pool: &PgPool) {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS effects (
            consumer text, event_id uuid, n int NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (consumer, event_id))",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Waits until `consumer` has an effect for `count` events.
async fn wait_for_effects(pool: &PgPool, consumer: &str, count: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM effects WHERE consumer = $1")
            .bind(consumer)
            .fetch_one(pool)
            .await
            .unwrap();
        if done >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumer} handled {done} of {count} events in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn counts(pool: &PgPool, consumer: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT n FROM effects WHERE consumer = $1")
        .bind(consumer)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn stop(runtime: Runtime, mode: Mode, settings: &Settings) {
    runtime.shutdown(Duration::from_secs(5)).await;
    if mode == Mode::JetStream {
        delete_stream(settings).await;
    }
}

/// Removes a test's JetStream stream (the server is shared).
async fn delete_stream(settings: &Settings) {
    if let Ok(client) = async_nats::connect(nats_url()).await {
        let js = async_nats::jetstream::new(client);
        let _ = js.delete_stream(&settings.nats_stream).await;
    }
}

// ------------------------------------------------------------ both modes

async fn each_event_reaches_its_consumers_once(mode: Mode) {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    effects_table(&pool).await;
    let settings = settings(3);
    let bookings = Consumer::new("bookings_only", Counter::new("bookings_only"))
        .on("booking.*")
        .priority(Priority::Critical);
    let everything = Consumer::new("everything", Counter::new("everything")).on("*");
    let runtime = start(mode, &pool, vec![bookings, everything], &settings).await;
    let booked = record(&pool, "booking.requested", 120).await;
    let listed = record(&pool, "listing.published", 30).await;

    wait_for_effects(&pool, "bookings_only", booked.len() as i64).await;
    wait_for_effects(&pool, "everything", (booked.len() + listed.len()) as i64).await;
    // Let any duplicate delivery land before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let only: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM effects WHERE consumer = 'bookings_only' ORDER BY event_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected = booked.clone();
    expected.sort();
    assert_eq!(
        only, expected,
        "the family consumer got exactly the booking events"
    );
    assert!(counts(&pool, "everything").await.iter().all(|&n| n == 1));
    assert!(counts(&pool, "bookings_only").await.iter().all(|&n| n == 1));
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        keys,
        120 + 150,
        "one processed-event key per consumer and event"
    );
    stop(runtime, mode, &settings).await;
}

#[tokio::test]
async fn events_in_process_each_event_reaches_its_consumers_once() {
    each_event_reaches_its_consumers_once(Mode::InProcess).await;
}

#[tokio::test]
async fn events_on_jetstream_each_event_reaches_its_consumers_once() {
    each_event_reaches_its_consumers_once(Mode::JetStream).await;
}

async fn failures_are_retried_with_back_off(mode: Mode) {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    effects_table(&pool).await;
    let settings = settings(5);
    let flaky = Counter {
        fail_first: 2,
        ..Counter::new("flaky")
    };
    let runtime = start(
        mode,
        &pool,
        vec![Consumer::new("flaky", flaky).on("booking.*")],
        &settings,
    )
    .await;
    let ids = record(&pool, "booking.approved", 5).await;
    wait_for_effects(&pool, "flaky", ids.len() as i64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(counts(&pool, "flaky").await.iter().all(|&n| n == 1));
    let (retries, dead): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM event_retries), (SELECT count(*) FROM dead_letters)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (retries, dead),
        (0, 0),
        "every retry succeeded and was cleared"
    );
    stop(runtime, mode, &settings).await;
}

#[tokio::test]
async fn events_in_process_failures_are_retried_with_back_off() {
    failures_are_retried_with_back_off(Mode::InProcess).await;
}

#[tokio::test]
async fn events_on_jetstream_failures_are_retried_with_back_off() {
    failures_are_retried_with_back_off(Mode::JetStream).await;
}

async fn a_panicking_handler_is_dead_lettered_and_replayed(mode: Mode) {
    let app = TestApp::builder().without_consumers().spawn().await;
    let pool = app.db.clone();
    effects_table(&pool).await;
    let settings = settings(3);
    let breaking = Counter {
        panic_on: Some(7),
        ..Counter::new("fragile")
    };
    let broken = breaking.broken.clone();
    let runtime = start(
        mode,
        &pool,
        vec![Consumer::new("fragile", breaking).on("booking.*")],
        &settings,
    )
    .await;
    let ids = record(&pool, "booking.completed", 20).await;
    // The other 19 flow; the 8th (i = 7) ends as a dead letter.
    wait_for_effects(&pool, "fragile", 19).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let letter = loop {
        let letter: Option<(Uuid, Uuid, i32, String)> = sqlx::query_as(
            "SELECT id, event_id, attempts, error FROM dead_letters WHERE consumer = 'fragile'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(letter) = letter {
            break letter;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(letter.1, ids[7]);
    assert_eq!(letter.2, 3, "dead-lettered after EVENTS_MAX_ATTEMPTS");
    assert!(letter.3.contains("breaks the handler"), "{}", letter.3);

    // An operator sees it, fixes the cause and replays it.
    let (_, admin) = app.admin("ops@example.com").await;
    let (status, _, list) = send(
        &app,
        "GET",
        "/v1/admin/dead-letters?consumer=fragile",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["event_type"], "booking.completed");
    assert_eq!(list["data"][0]["object"], "dead_letter");
    broken.store(false, Ordering::SeqCst);
    let path = format!("/v1/admin/dead-letters/{}/replay", letter.0);
    let (status, _, replayed) = send(&app, "POST", &path, &admin, None).await;
    assert_eq!(status, 202, "{replayed}");
    assert!(replayed["replayed_at"].is_string());
    wait_for_effects(&pool, "fragile", 20).await;
    assert!(counts(&pool, "fragile").await.iter().all(|&n| n == 1));
    let (status, _, again) = send(&app, "POST", &path, &admin, None).await;
    assert_eq!((status, error_code(&again)), (409, "already_replayed"));
    let (status, _, open) = send(&app, "GET", "/v1/admin/dead-letters", &admin, None).await;
    assert_eq!(status, 200);
    assert!(open["data"].as_array().unwrap().is_empty(), "{open}");
    // Renters are not operators.
    let (_, renter) = app.user("renter@example.com").await;
    let (status, _, _) = send(&app, "GET", "/v1/admin/dead-letters", &renter, None).await;
    assert_eq!(status, 403);
    stop(runtime, mode, &settings).await;
}

#[tokio::test]
async fn events_in_process_a_panicking_handler_is_dead_lettered_and_replayed() {
    a_panicking_handler_is_dead_lettered_and_replayed(Mode::InProcess).await;
}

#[tokio::test]
async fn events_on_jetstream_a_panicking_handler_is_dead_lettered_and_replayed() {
    a_panicking_handler_is_dead_lettered_and_replayed(Mode::JetStream).await;
}

async fn a_killed_worker_loses_nothing_and_doubles_nothing(mode: Mode) {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    effects_table(&pool).await;
    let settings = settings(3);
    let slow = || {
        Consumer::new(
            "slow",
            Counter {
                delay: Duration::from_millis(5),
                ..Counter::new("slow")
            },
        )
        .on("booking.*")
    };
    let ids = record(&pool, "booking.started", 200).await;
    let runtime = start(mode, &pool, vec![slow()], &settings).await;
    // Kill it mid-way: some batches committed, one in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
            .fetch_one(&pool)
            .await
            .unwrap();
        if done > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing handled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.abort();
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(done < ids.len() as i64, "the worker was killed mid-way");

    let runtime = start(mode, &pool, vec![slow()], &settings).await;
    wait_for_effects(&pool, "slow", ids.len() as i64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = counts(&pool, "slow").await;
    assert_eq!(counts.len(), ids.len());
    assert!(
        counts.iter().all(|&n| n == 1),
        "every event had exactly one effect"
    );
    stop(runtime, mode, &settings).await;
}

#[tokio::test]
async fn events_in_process_a_killed_worker_loses_nothing_and_doubles_nothing() {
    a_killed_worker_loses_nothing_and_doubles_nothing(Mode::InProcess).await;
}

#[tokio::test]
async fn events_on_jetstream_a_killed_worker_loses_nothing_and_doubles_nothing() {
    a_killed_worker_loses_nothing_and_doubles_nothing(Mode::JetStream).await;
}

// ------------------------------------------------------------ the outbox

#[tokio::test]
async fn events_a_new_consumer_replays_history_unless_it_starts_from_now() {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    effects_table(&pool).await;
    let settings = settings(3);
    let history = record(&pool, "booking.completed", 5).await;
    let projection = Consumer::new("projection", Counter::new("projection")).on("*");
    let notifier = Consumer::new("notifier", Counter::new("notifier"))
        .on("*")
        .from_now();
    let runtime = start(
        Mode::InProcess,
        &pool,
        vec![projection, notifier],
        &settings,
    )
    .await;
    // Both cursors exist before the new events are written.
    eventually_registered(&pool, 2).await;
    let news = record(&pool, "booking.completed", 3).await;
    wait_for_effects(&pool, "projection", (history.len() + news.len()) as i64).await;
    wait_for_effects(&pool, "notifier", news.len() as i64).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM effects WHERE consumer = 'notifier'")
            .fetch_all(&pool)
            .await
            .unwrap();
    seen.sort();
    let mut expected = news.clone();
    expected.sort();
    assert_eq!(
        seen, expected,
        "the notifier saw only what happened after it started"
    );
    stop(runtime, Mode::InProcess, &settings).await;
}

async fn eventually_registered(pool: &PgPool, cursors: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM event_cursors")
        .fetch_one(pool)
        .await
        .unwrap()
        < cursors
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumers never registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn events_committed_late_are_not_skipped() {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    effects_table(&pool).await;
    let settings = settings(3);
    let runtime = start(
        Mode::InProcess,
        &pool,
        vec![Consumer::new("late", Counter::new("late")).on("*")],
        &settings,
    )
    .await;
    // A transaction records its event first but commits last.
    let mut slow = pool.begin().await.unwrap();
    let late = outbox::record(
        &mut slow,
        NewEvent {
            event_type: "booking.requested",
            aggregate_type: "test",
            aggregate_id: "late".into(),
            payload: json!({}),
        },
    )
    .await
    .unwrap();
    let early = record(&pool, "booking.requested", 10).await;
    // The consumer may not pass the open transaction.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seen, 0, "events behind an open transaction wait for it");
    slow.commit().await.unwrap();
    wait_for_effects(&pool, "late", early.len() as i64 + 1).await;
    let handled: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM effects WHERE event_id = $1)")
            .bind(late)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(handled);
    stop(runtime, Mode::InProcess, &settings).await;
}

#[tokio::test]
async fn events_background_consumers_wait_while_critical_ones_are_behind() {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    effects_table(&pool).await;
    let settings = Settings {
        batch_size: 20,
        ..settings(3)
    };
    let critical = Consumer::new(
        "critical",
        Counter {
            delay: Duration::from_millis(4),
            ..Counter::new("critical")
        },
    )
    .on("*")
    .priority(Priority::Critical);
    let background = Consumer::new("background", Counter::new("background"))
        .on("*")
        .priority(Priority::Background);
    let runtime = start(
        Mode::InProcess,
        &pool,
        vec![critical, background],
        &settings,
    )
    .await;
    // 300 events appear at once (one transaction) for both consumers.
    sqlx::query(
        "INSERT INTO events (id, type, aggregate_type, aggregate_id, payload)
         SELECT gen_random_uuid(), 'booking.requested', 'test', i::text, '{}'
           FROM generate_series(1, 300) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    wait_for_effects(&pool, "critical", 300).await;
    wait_for_effects(&pool, "background", 300).await;
    // Unchecked, the fast background consumer would be done long before
    // the slow critical one. It may only take the few batches it read
    // before the critical consumer's first read raised the pressure.
    let early: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM effects WHERE consumer = 'background'
           AND at < (SELECT max(at) FROM effects WHERE consumer = 'critical') - interval '50 milliseconds'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        early <= 100,
        "background handled {early} events before critical caught up"
    );
    stop(runtime, Mode::InProcess, &settings).await;
}

// ------------------------------------------------------------ backpressure

#[tokio::test]
async fn events_a_deep_backlog_sheds_non_critical_writes_only() {
    let app = TestApp::builder()
        .without_consumers()
        .env("EVENTS_BACKLOG_LIMIT", "5")
        .spawn()
        .await;
    let (_, owner) = app.user("owner@example.com").await;
    // The deployment's consumers exist but are not running.
    for name in ["notifications", "support_cases"] {
        rentify_events::stream::register(&app.db, name)
            .await
            .unwrap();
    }
    record(&app.db, "listing.published", 10).await;
    let body = crate::support::listing_body();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let (status, headers, body) = send(&app, "POST", "/v1/listings", &owner, Some(&body)).await;
        if status == 503 {
            break (headers, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never shed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(error_code(&shed.1), "overloaded");
    assert!(shed.0.get("retry-after").is_some());
    // Reads and critical writes go on.
    let (status, _, _) = send(&app, "GET", "/v1/categories", &owner, None).await;
    assert_eq!(status, 200);
    let (status, _, card) = send(
        &app,
        "POST",
        "/v1/payments/methods",
        &owner,
        Some(&json!({"token": "tok_visa"})),
    )
    .await;
    assert_eq!(status, 201, "{card}");
    // The consumers catch up: writes are accepted again.
    sqlx::query(
        "UPDATE event_cursors SET (tx_id, position) =
           (SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = send(&app, "POST", "/v1/listings", &owner, Some(&body)).await;
        if status == 201 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still shed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------ retention

#[tokio::test]
async fn events_retention_keeps_what_is_still_needed() {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    let old = record(&pool, "booking.completed", 4).await;
    rentify_events::stream::register(&pool, "reader")
        .await
        .unwrap();
    sqlx::query("UPDATE events SET occurred_at = now() - interval '100 days'")
        .execute(&pool)
        .await
        .unwrap();
    // The reader passed the first two; the third waits for a retry.
    sqlx::query(
        "UPDATE event_cursors SET (tx_id, position) =
           (SELECT tx_id, position FROM events WHERE id = $1) WHERE name = 'reader'",
    )
    .bind(old[1])
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO event_retries (consumer, event_id, attempts, next_attempt_at, last_error)
         VALUES ('reader', $1, 1, now(), 'x')",
    )
    .bind(old[0])
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES
         ('reader', $1, now() - interval '100 days'), ('reader', $2, now())",
    )
    .bind(old[1])
    .bind(old[2])
    .execute(&pool)
    .await
    .unwrap();
    let fresh = record(&pool, "booking.completed", 1).await;
    let mut conn = pool.acquire().await.unwrap();
    let deleted = rentify::retention::purge(
        &mut conn,
        &rentify::retention::Retention {
            events_days: 90,
            notifications_days: 180,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        deleted.events, 1,
        "only the old, passed, settled event goes"
    );
    assert_eq!(deleted.processed_event_keys, 1);
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM events ORDER BY position")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec![old[0], old[2], old[3], fresh[0]]);
}

#[tokio::test]
async fn events_the_stream_orders_transaction_ids_as_numbers_not_text() {
    let database = TestDatabase::create().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    // Two events of old transactions whose ids differ in digit count: as
    // text "999" sorts after "1000", which once sent a cursor backwards.
    for tx in ["999", "1000"] {
        sqlx::query(
            "INSERT INTO events (id, tx_id, type, aggregate_type, aggregate_id, payload)
             VALUES (gen_random_uuid(), $1::xid8, 'listing.published', 'test', $1, '{}')",
        )
        .bind(tx)
        .execute(&pool)
        .await
        .unwrap();
    }
    let mut conn = pool.acquire().await.unwrap();
    let start = rentify_events::stream::Cursor {
        tx_id: 0,
        position: 0,
    };
    let horizon: String =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let horizon = rentify_events::stream::Horizon(horizon.parse().unwrap());
    // Nothing of these types: the read skips to the last event of the stream.
    let (events, reached) =
        rentify_events::stream::read_after(&mut conn, start, horizon, &["booking.%".into()], 10)
            .await
            .unwrap();
    assert!(events.is_empty());
    assert_eq!(reached.unwrap().tx_id, 1000);
    // Both events, in numeric order.
    let (events, _) =
        rentify_events::stream::read_after(&mut conn, start, horizon, &["%".into()], 10)
            .await
            .unwrap();
    let order: Vec<&str> = events
        .iter()
        .map(|(_, e)| e.aggregate_id.as_str())
        .collect();
    assert_eq!(order, ["999", "1000"]);
}
