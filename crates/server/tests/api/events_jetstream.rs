//! The event consumers in JetStream mode, against a real nats-server
//! (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`): the relay, durable
//! consumers shared by workers, replay, crashes, NATS outages and dead
//! letters. Each test has its own stream and subject prefix, deleted at its
//! end, so the tests share one server in parallel.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    path::PathBuf,
    time::Duration,
};

use rentify_events::{
    Consumer, Context, Event, Handler, Runtime, Settings,
    jetstream::{self, Tuning, async_nats},
    retry::Backoff,
};
use rentify_platform::outbox::{self, NewEvent};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::TestDatabase;

/// How long a test waits for what must happen (a NATS restart takes a few
/// seconds of reconnect back-off).
const DEADLINE: Duration = Duration::from_secs(30);

fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn settings() -> Settings {
    let suffix = &Uuid::new_v4().simple().to_string()[..12];
    Settings {
        batch_size: 10,
        nats_stream: format!("T_{suffix}"),
        nats_subject_prefix: format!("t{suffix}"),
        poll_interval: Duration::from_millis(20),
        max_attempts: 3,
        retry: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    }
}

/// A test's own stream on a nats-server, deleted when the test ends, even
/// when it fails.
struct Lane {
    url: String,
    settings: Settings,
}

impl Lane {
    fn new(url: String, settings: Settings) -> Self {
        Self { url, settings }
    }

    async fn stream(&self) -> async_nats::jetstream::stream::Stream {
        let client = async_nats::connect(&self.url).await.unwrap();
        async_nats::jetstream::new(client)
            .get_stream(&self.settings.nats_stream)
            .await
            .unwrap()
    }

    async fn messages(&self) -> u64 {
        self.stream().await.get_info().await.unwrap().state.messages
    }

    /// `None` until the worker created the durable consumer.
    async fn consumer(&self, name: &str) -> Option<async_nats::jetstream::consumer::Info> {
        let client = async_nats::connect(&self.url).await.ok()?;
        let stream = async_nats::jetstream::new(client)
            .get_stream(&self.settings.nats_stream)
            .await
            .ok()?;
        stream.consumer_info(name).await.ok()
    }

    /// Every message was delivered to `name` and acknowledged.
    async fn settled(&self, name: &str) -> bool {
        self.consumer(name)
            .await
            .is_some_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.settings.nats_stream.clone());
        // Drop runs inside the test's runtime; use a private one on a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let connect = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(&url);
                if let Ok(client) = connect.await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&name)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A handler whose effect counts per event, so a second effect shows as 2;
/// it can be slow, and panic on one aggregate.
struct Recorder {
    consumer: &'static str,
    worker: &'static str,
    delay: Duration,
    panic_on: Option<&'static str>,
    /// Handler runs begun (committed or not).
    started: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    fn new(consumer: &'static str) -> Self {
        Self {
            consumer,
            worker: "w1",
            delay: Duration::ZERO,
            panic_on: None,
            started: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.panic_on == Some(event.aggregate_id.as_str()) {
            panic!("poisoned event {}", event.aggregate_id);
        }
        sqlx::query(
            "INSERT INTO effects (consumer, event_id, worker, n) VALUES ($1, $2, $3, 1)
             ON CONFLICT (consumer, event_id) DO UPDATE SET n = effects.n + 1",
        )
        .bind(self.consumer)
        .bind(event.id)
        .bind(self.worker)
        .execute(&mut *cx.tx)
        .await?;
        Ok(())
    }
}

fn consumer(topic: &str, recorder: Recorder) -> Consumer {
    Consumer::new(recorder.consumer, recorder).on(topic)
}

async fn database() -> (TestDatabase, PgPool) {
    let database = TestDatabase::create().await;
    let db = PgPool::connect(&database.url).await.unwrap();
    sqlx::query(
        "CREATE TABLE effects (
             consumer text NOT NULL, event_id uuid NOT NULL, worker text NOT NULL,
             n integer NOT NULL, PRIMARY KEY (consumer, event_id))",
    )
    .execute(&db)
    .await
    .unwrap();
    (database, db)
}

/// Records events of `event_type` for aggregates `e<from>`..`e<to>` in one
/// transaction; returns their ids.
async fn record(db: &PgPool, event_type: &str, range: std::ops::Range<u32>) -> Vec<Uuid> {
    let mut tx = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for i in range {
        let event = NewEvent {
            event_type,
            aggregate_type: "widget",
            aggregate_id: format!("e{i}"),
            payload: serde_json::json!({ "i": i }),
        };
        ids.push(outbox::record(&mut tx, event).await.unwrap());
    }
    tx.commit().await.unwrap();
    ids
}

/// `consumer`'s effects: event id → (times, worker).
async fn effects(db: &PgPool, consumer: &str) -> BTreeMap<Uuid, (i32, String)> {
    let rows: Vec<(Uuid, i32, String)> =
        sqlx::query_as("SELECT event_id, n, worker FROM effects WHERE consumer = $1")
            .bind(consumer)
            .fetch_all(db)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, n, worker)| (id, (n, worker)))
        .collect()
}

async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `consumer` has an effect for each of `ids` and nothing
/// else, and checks each happened exactly once.
async fn handled_once(db: &PgPool, consumer: &str, ids: &[Uuid]) {
    let expected: BTreeSet<Uuid> = ids.iter().copied().collect();
    eventually(
        &format!("{consumer} handled {} events", ids.len()),
        DEADLINE,
        || async { effects(db, consumer).await.len() >= ids.len() },
    )
    .await;
    let seen = effects(db, consumer).await;
    assert_eq!(seen.keys().copied().collect::<BTreeSet<_>>(), expected);
    let twice: Vec<_> = seen.iter().filter(|(_, (n, _))| *n != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
}

/// Events of the outbox that the relay has not passed yet.
async fn unrelayed(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events e, event_cursors c
         WHERE c.name = $1 AND (e.tx_id, e.position) > (c.tx_id, c.position)",
    )
    .bind(jetstream::RELAY_CURSOR)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn start(db: &PgPool, consumers: Vec<Consumer>, settings: &Settings, url: &str) -> Runtime {
    Runtime::start(db.clone(), consumers, settings.clone(), Some(url))
        .await
        .expect("the JetStream runtime starts")
}

#[tokio::test]
async fn relayed_events_reach_a_consumer_once_and_republishing_is_deduplicated() {
    let (_database, db) = database().await;
    let lane = Lane::new(nats_url(), settings());
    let runtime = start(
        &db,
        vec![consumer("*", Recorder::new("audit"))],
        &lane.settings,
        &lane.url,
    )
    .await;
    let ids = record(&db, "widget.made", 0..6).await;
    handled_once(&db, "audit", &ids).await;
    assert_eq!(lane.messages().await, 6);
    // Subject `<prefix>.<type>`, message id = event id.
    let first = lane.stream().await.get_raw_message(1).await.unwrap();
    assert_eq!(
        first.subject.as_str(),
        format!("{}.widget.made", lane.settings.nats_subject_prefix)
    );
    let msg_id = first
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_owned());
    assert_eq!(msg_id, Some(ids[0].to_string()));

    // The relay starts over from the beginning: it publishes every event
    // again and JetStream drops them all as duplicates.
    sqlx::query("UPDATE event_cursors SET tx_id = '0'::xid8, position = 0 WHERE name = $1")
        .bind(jetstream::RELAY_CURSOR)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(unrelayed(&db).await, 6);
    eventually("the relay published again", DEADLINE, || async {
        unrelayed(&db).await == 0
    })
    .await;
    assert_eq!(lane.messages().await, 6);
    eventually("the consumer is settled", DEADLINE, || {
        lane.settled("audit")
    })
    .await;
    let info = lane.consumer("audit").await.unwrap();
    assert_eq!(info.delivered.stream_sequence, 6);
    handled_once(&db, "audit", &ids).await;
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn two_workers_share_a_durable_consumer_and_handle_each_event_once() {
    let (_database, db) = database().await;
    let lane = Lane::new(
        nats_url(),
        Settings {
            batch_size: 4,
            ..settings()
        },
    );
    let worker = |name| Recorder {
        worker: name,
        delay: Duration::from_millis(20),
        ..Recorder::new("shared")
    };
    let one = start(
        &db,
        vec![consumer("widget.*", worker("w1"))],
        &lane.settings,
        &lane.url,
    )
    .await;
    let two = start(
        &db,
        vec![consumer("widget.*", worker("w2"))],
        &lane.settings,
        &lane.url,
    )
    .await;
    // Both workers are waiting on the durable consumer before work arrives.
    eventually("both workers pull", DEADLINE, || async {
        lane.consumer("shared")
            .await
            .is_some_and(|info| info.num_waiting >= 2)
    })
    .await;
    let mut ids = Vec::new();
    for round in 0..4 {
        ids.extend(record(&db, "widget.made", round * 10..round * 10 + 10).await);
    }
    handled_once(&db, "shared", &ids).await;
    let workers: BTreeSet<String> = effects(&db, "shared")
        .await
        .into_values()
        .map(|(_, worker)| worker)
        .collect();
    assert_eq!(workers, BTreeSet::from(["w1".to_owned(), "w2".to_owned()]));
    one.shutdown(Duration::from_secs(5)).await;
    two.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_consumer_added_later_replays_the_history() {
    let (_database, db) = database().await;
    let lane = Lane::new(nats_url(), settings());
    let runtime = start(
        &db,
        vec![consumer("*", Recorder::new("early"))],
        &lane.settings,
        &lane.url,
    )
    .await;
    let widgets = record(&db, "widget.made", 0..3).await;
    let gadgets = record(&db, "gadget.sold", 3..5).await;
    let all: Vec<Uuid> = widgets.iter().chain(&gadgets).copied().collect();
    handled_once(&db, "early", &all).await;
    runtime.shutdown(Duration::from_secs(5)).await;

    // A new consumer of one family, deployed later, gets that family's
    // past events; the old one is not served them again.
    let runtime = start(
        &db,
        vec![
            consumer("*", Recorder::new("early")),
            consumer("widget.*", Recorder::new("late")),
        ],
        &lane.settings,
        &lane.url,
    )
    .await;
    handled_once(&db, "late", &widgets).await;
    let more = record(&db, "widget.made", 5..6).await;
    let widgets: Vec<Uuid> = widgets.into_iter().chain(more.clone()).collect();
    let all: Vec<Uuid> = all.into_iter().chain(more).collect();
    handled_once(&db, "late", &widgets).await;
    handled_once(&db, "early", &all).await;
    eventually("both consumers are settled", DEADLINE, || async {
        lane.settled("early").await && lane.settled("late").await
    })
    .await;
    handled_once(&db, "early", &all).await;
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_worker_killed_mid_batch_leaves_every_event_handled_once() {
    let (_database, db) = database().await;
    let lane = Lane::new(nats_url(), settings());
    // A short ack wait, so the dead worker's messages come back quickly.
    let tuning = Tuning {
        ack_wait: Duration::from_secs(2),
        ..Tuning::default()
    };
    let run = |recorder: Recorder| {
        let (db, lane_settings, url, tuning) = (
            db.clone(),
            lane.settings.clone(),
            lane.url.clone(),
            tuning.clone(),
        );
        async move {
            let consumers = vec![consumer("*", recorder)];
            jetstream::spawn_tuned(
                db,
                &url,
                consumers,
                lane_settings,
                tuning,
                CancellationToken::new(),
            )
            .await
            .unwrap()
        }
    };
    let slow = Recorder {
        delay: Duration::from_millis(300),
        ..Recorder::new("counter")
    };
    let started = slow.started.clone();
    let mut crashed = run(slow).await;
    let ids = record(&db, "widget.made", 0..10).await;
    // The messages arrive together and are handled as one transaction:
    // kill the worker once it is inside it.
    eventually("the worker is in its batch", DEADLINE, || {
        let started = started.clone();
        async move { started.load(std::sync::atomic::Ordering::SeqCst) >= 2 }
    })
    .await;
    crashed.abort_all();
    while crashed.join_next().await.is_some() {}
    let before = effects(&db, "counter").await.len();
    assert!(
        before < ids.len(),
        "the crash came after the batch ({before} handled)"
    );

    let restarted = run(Recorder::new("counter")).await;
    handled_once(&db, "counter", &ids).await;
    eventually("every message is acknowledged", DEADLINE, || {
        lane.settled("counter")
    })
    .await;
    handled_once(&db, "counter", &ids).await;
    drop(restarted);
}

/// A nats-server of the test's own, to stop and start again.
struct PrivateNats {
    port: u16,
    store: PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = std::env::temp_dir().join(format!("rentify-nats-{}", Uuid::new_v4().simple()));
        let mut nats = Self {
            port,
            store,
            child: None,
        };
        nats.restart().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new("/usr/sbin/nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        eventually("nats-server listens", DEADLINE, || async {
            tokio::net::TcpStream::connect(&address).await.is_ok()
        })
        .await;
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_nats_is_down_and_flow_when_it_returns() {
    let (_database, db) = database().await;
    let mut nats = PrivateNats::start().await;
    let settings = settings();
    let runtime = start(
        &db,
        vec![consumer("*", Recorder::new("steady"))],
        &settings,
        &nats.url(),
    )
    .await;
    let first = record(&db, "widget.made", 0..2).await;
    handled_once(&db, "steady", &first).await;

    nats.stop().await;
    let during = record(&db, "widget.made", 2..5).await;
    // Give the relay time to fail: longer than a publish waits for its ack.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(effects(&db, "steady").await.len(), 2);
    assert_eq!(
        unrelayed(&db).await,
        3,
        "the relay moved past events NATS never got"
    );

    nats.restart().await;
    let all: Vec<Uuid> = first.into_iter().chain(during).collect();
    handled_once(&db, "steady", &all).await;
    assert_eq!(unrelayed(&db).await, 0);
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_panicking_handler_is_retried_then_dead_lettered_while_others_flow() {
    let (_database, db) = database().await;
    let lane = Lane::new(nats_url(), settings());
    let fragile = Recorder {
        panic_on: Some("e2"),
        ..Recorder::new("fragile")
    };
    let runtime = start(&db, vec![consumer("*", fragile)], &lane.settings, &lane.url).await;
    let ids = record(&db, "widget.made", 0..5).await;
    let poisoned = ids[2];
    let good: Vec<Uuid> = ids.iter().copied().filter(|id| *id != poisoned).collect();
    handled_once(&db, "fragile", &good).await;

    let dead_letter = || async {
        sqlx::query_as::<_, (i32, String)>(
            "SELECT attempts, error FROM dead_letters WHERE consumer = 'fragile' AND event_id = $1",
        )
        .bind(poisoned)
        .fetch_optional(&db)
        .await
        .unwrap()
    };
    eventually("the poisoned event is dead-lettered", DEADLINE, || async {
        dead_letter().await.is_some()
    })
    .await;
    let (attempts, error) = dead_letter().await.unwrap();
    assert_eq!(attempts, 3);
    assert!(error.contains("poisoned event e2"), "{error}");
    let retries: i64 = sqlx::query_scalar("SELECT count(*) FROM event_retries")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(retries, 0);
    // The message itself was settled: the retry lane owns the failure.
    eventually("the consumer is settled", DEADLINE, || {
        lane.settled("fragile")
    })
    .await;
    handled_once(&db, "fragile", &good).await;
    runtime.shutdown(Duration::from_secs(5)).await;
}
