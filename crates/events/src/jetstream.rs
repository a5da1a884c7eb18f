//! NATS JetStream mode (when `NATS_URL` is set): a relay publishes the
//! outbox to JetStream and every consumer runs as a durable JetStream
//! consumer, so several worker processes share its work and a new consumer
//! replays the stream's history.
//!
//! The outbox stays the source of truth. The relay moves its cursor
//! (`__nats_relay` in `event_cursors`) only after JetStream acknowledged
//! every message of a batch, so while NATS is away events wait in the
//! outbox and flow when it returns. A batch published twice (an ack lost,
//! a relay that died before committing) is dropped by JetStream's
//! de-duplication, as each message's id is its event's id.
//!
//! A message is delivered through [`deliver::deliver`], the same path as a
//! retry: effect and processed-event key commit together, so a redelivery
//! (a crash before the ack, an ack lost) is a no-op `Duplicate`. A failing
//! handler is handed to the database retry lane and the message is acked,
//! so retries, back-off and dead letters behave as in the in-process mode.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{
    self as js,
    consumer::{
        AckPolicy, DeliverPolicy, PullConsumer,
        pull::{self, MessagesErrorKind as PullErrorKind},
    },
    message::{AckKind, PublishMessage},
    stream::StorageType,
};
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    Consumer, Event, Settings, deliver,
    retry::Backoff,
    stream::{self, Cursor},
};

/// The client these functions are built on, for callers (tests, operator
/// tools) that need to look at the stream itself.
pub use async_nats;

/// The relay's cursor in `event_cursors`.
pub const RELAY_CURSOR: &str = "__nats_relay";

/// `<prefix>.<event type>`, e.g. `rentify.booking.approved`.
pub fn subject(settings: &Settings, event_type: &str) -> String {
    format!("{}.{event_type}", settings.nats_subject_prefix)
}

/// How the durable consumers are set up.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// How long JetStream waits for an ack before it redelivers a message:
    /// the delay before a crashed worker's messages go to another worker.
    /// Short, because a handler running longer keeps its message with
    /// progress acks; a message that waited longer in a worker's buffer is
    /// redelivered and then recognised as a duplicate.
    pub ack_wait: Duration,
    /// Messages a durable consumer may have out un-acked, across all
    /// workers: bounds what a stuck worker holds back.
    pub max_ack_pending: i64,
    /// How long the stream keeps an event: as long as the outbox and the
    /// processed-event keys (`RETENTION_EVENTS_DAYS`), so that a consumer
    /// replaying the stream never meets an event whose key is gone.
    pub max_age: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(10),
            max_ack_pending: 1_000,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Tuning {
    /// The defaults, with the stream kept as long as the configuration's
    /// event retention.
    pub fn from_config(config: &rentify_platform::config::Config) -> Self {
        Self {
            max_age: Duration::from_secs(u64::from(config.retention_events_days) * 24 * 3600),
            ..Self::default()
        }
    }
}

/// JetStream drops a message whose id it saw within this window, which
/// covers a relay batch published again after a lost ack or a crash.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Messages a worker asks for at a time: small enough that several workers
/// share a backlog instead of one of them buffering it.
const PULL_BATCH_MAX: u32 = 100;
/// A pull request's life, and the heartbeat that tells a live one from one
/// lost with its connection.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Missed heartbeats in a row after which the durable consumer is looked
/// up (and created) again: it may have been lost with the server.
const MISSED_HEARTBEATS_MAX: u32 = 3;
/// How often each consumer looks at its due retries (as in-process).
const RETRY_SCAN: Duration = Duration::from_millis(250);
/// When a delivery could not reach the database, JetStream redelivers the
/// message after this.
const NAK_DELAY: Duration = Duration::from_secs(1);
/// Waits between attempts after NATS or the database failed.
const TROUBLE: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// Starts the relay and `consumers` on the JetStream server at `nats_url`.
pub async fn spawn(
    pool: PgPool,
    nats_url: &str,
    consumers: Vec<Consumer>,
    settings: Settings,
    token: CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    spawn_tuned(
        pool,
        nats_url,
        consumers,
        settings,
        Tuning::default(),
        token,
    )
    .await
}

/// [`spawn`] with its durable consumers set up by `tuning`.
///
/// Fails only on a malformed URL: a server that is down at start is
/// waited for, as one that goes away later is.
pub async fn spawn_tuned(
    pool: PgPool,
    nats_url: &str,
    consumers: Vec<Consumer>,
    settings: Settings,
    tuning: Tuning,
    token: CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let client = async_nats::ConnectOptions::new()
        .name("rentify-worker")
        .retry_on_initial_connect()
        .connect(nats_url)
        .await
        .context("NATS_URL is not a usable NATS address")?;
    let js = js::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        // A batch's acks are awaited after all of it is sent: room for it.
        .max_ack_inflight((settings.batch_size as usize).max(5_000))
        .build(client);
    let mut tasks = JoinSet::new();
    tasks.spawn(relay(
        pool.clone(),
        js.clone(),
        settings.clone(),
        tuning.clone(),
        token.clone(),
    ));
    for consumer in consumers {
        tasks.spawn(run_retries(
            pool.clone(),
            consumer.clone(),
            settings.clone(),
            token.clone(),
        ));
        let worker = Worker {
            pool: pool.clone(),
            js: js.clone(),
            consumer,
            settings: settings.clone(),
            tuning: tuning.clone(),
        };
        tasks.spawn(worker.run(token.clone()));
    }
    Ok(tasks)
}

/// Creates the stream if it does not exist. File storage, kept as long as
/// the outbox: the stream is the history a new consumer replays.
async fn ensure_stream(
    js: &js::Context,
    settings: &Settings,
    tuning: &Tuning,
) -> anyhow::Result<()> {
    js.get_or_create_stream(js::stream::Config {
        name: settings.nats_stream.clone(),
        subjects: vec![format!("{}.>", settings.nats_subject_prefix)],
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: tuning.max_age,
        ..Default::default()
    })
    .await
    .with_context(|| format!("the JetStream stream {}", settings.nats_stream))?;
    Ok(())
}

/// Sleeps for `idle` unless cancelled first; `false` when cancelled.
async fn pause(token: &CancellationToken, idle: Duration) -> bool {
    if idle.is_zero() {
        tokio::task::yield_now().await;
        return !token.is_cancelled();
    }
    tokio::select! {
        _ = token.cancelled() => false,
        _ = tokio::time::sleep(idle) => true,
    }
}

// ---------------------------------------------------------------- relay

/// Publishes the outbox to JetStream, a batch per transaction, in stream
/// order, until cancelled. One process relays at a time (the cursor row is
/// locked); the others wait their turn.
async fn relay(
    pool: PgPool,
    js: js::Context,
    settings: Settings,
    tuning: Tuning,
    token: CancellationToken,
) {
    while let Err(error) = stream::register(&pool, RELAY_CURSOR).await {
        tracing::warn!(error = %error, "cannot register the NATS relay; retrying");
        if !pause(&token, Duration::from_secs(1)).await {
            return;
        }
    }
    let mut stream_ready = false;
    let mut failures = 0;
    loop {
        let result = async {
            if !stream_ready {
                ensure_stream(&js, &settings, &tuning).await?;
                stream_ready = true;
            }
            relay_batch(&pool, &js, &settings).await
        }
        .await;
        let idle = match result {
            Ok(full) => {
                failures = 0;
                if full {
                    Duration::ZERO
                } else {
                    settings.poll_interval
                }
            }
            Err(error) => {
                // The stream may be gone (a NATS without its store): make
                // sure of it again before the next batch.
                stream_ready = false;
                failures += 1;
                tracing::warn!(
                    error = format!("{error:#}"),
                    attempts = failures,
                    "event relay to NATS failed; retrying"
                );
                TROUBLE.next(failures)
            }
        };
        if !pause(&token, idle).await {
            return;
        }
    }
}

/// Publishes the next batch; `true` when it was full (more may wait).
/// The cursor moves only when JetStream acked every message of it.
async fn relay_batch(pool: &PgPool, js: &js::Context, settings: &Settings) -> anyhow::Result<bool> {
    let limit = i64::from(settings.batch_size);
    let mut tx = pool.begin().await?;
    let Some((cursor, horizon)) = stream::lock_cursor(&mut tx, RELAY_CURSOR).await? else {
        // Another process is relaying.
        return Ok(false);
    };
    let (events, reached) =
        stream::read_after(&mut tx, cursor, horizon, &["%".to_owned()], limit).await?;
    let Some(reached) = reached else {
        return Ok(false);
    };
    let duplicates = publish_all(js, settings, &events).await?;
    stream::save_cursor(&mut tx, RELAY_CURSOR, reached).await?;
    tx.commit().await?;
    metrics::counter!("events_relayed_total").increment(events.len() as u64);
    // Events JetStream already had: a batch published again after a crash
    // or a lost ack. A steady rate means the relay keeps failing mid-batch.
    metrics::counter!("events_relay_duplicates_total").increment(duplicates);
    Ok(events.len() as i64 == limit)
}

/// Sends every event, then waits for every ack: one round trip per batch
/// rather than per event. Returns how many JetStream dropped as duplicates.
async fn publish_all(
    js: &js::Context,
    settings: &Settings,
    events: &[(Cursor, Event)],
) -> anyhow::Result<u64> {
    let mut acks = Vec::with_capacity(events.len());
    for (_, event) in events {
        let message = PublishMessage::build()
            .payload(serde_json::to_vec(event)?.into())
            .message_id(event.id.to_string());
        let ack = js
            .send_publish(subject(settings, &event.event_type), message)
            .await
            .with_context(|| format!("publish event {}", event.id))?;
        acks.push(ack);
    }
    let mut duplicates = 0;
    for ack in
        futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await
    {
        let ack = ack.context("JetStream did not acknowledge an event")?;
        duplicates += u64::from(ack.duplicate);
    }
    Ok(duplicates)
}

// ------------------------------------------------------------ consumers

/// Runs `consumer`'s retries that are due: failures are owned by the
/// database in both modes.
async fn run_retries(
    pool: PgPool,
    consumer: Consumer,
    settings: Settings,
    token: CancellationToken,
) {
    while pause(&token, RETRY_SCAN).await {
        if let Err(error) = deliver::run_due_retries(&pool, &consumer, &settings, 50).await {
            tracing::error!(consumer = %consumer.name, error = %error, "event retries failed");
        }
    }
}

/// One consumer of this process, bound to its durable JetStream consumer.
struct Worker {
    pool: PgPool,
    js: js::Context,
    consumer: Consumer,
    settings: Settings,
    tuning: Tuning,
}

/// Why a message stream stopped.
enum Ended {
    Cancelled,
    /// The stream or the durable consumer is gone: bind again.
    Broken,
}

impl Worker {
    /// Binds the durable consumer and handles its messages until
    /// cancelled, binding again whenever NATS lost it.
    async fn run(self, token: CancellationToken) {
        let mut failures = 0;
        loop {
            match self.bind().await {
                Ok(messages) => {
                    failures = 0;
                    if let Ended::Cancelled = self.consume(messages, &token).await {
                        break;
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(
                        consumer = %self.consumer.name, error = format!("{error:#}"),
                        attempts = failures, "cannot bind the JetStream consumer; retrying"
                    );
                }
            }
            if !pause(&token, TROUBLE.next(failures.max(1))).await {
                break;
            }
        }
        // Acks are sent without waiting for the server: push them out.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.js.client().flush()).await;
    }

    /// Creates (or updates) the durable consumer and opens a pull stream.
    /// Every process binds the same durable, so they share its messages.
    async fn bind(&self) -> anyhow::Result<pull::Stream> {
        ensure_stream(&self.js, &self.settings, &self.tuning).await?;
        let version = self.js.client().server_info().version;
        let filter = filter(&self.settings, &self.consumer, supports_filters(&version));
        let config = pull::Config {
            durable_name: Some(self.consumer.name.clone()),
            description: Some(format!("rentify consumer {}", self.consumer.name)),
            // History for a consumer that replays it; a notifier starts now.
            deliver_policy: if self.consumer.replay {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.tuning.ack_wait,
            max_ack_pending: self.tuning.max_ack_pending,
            filter_subject: filter.subject,
            filter_subjects: filter.subjects,
            ..Default::default()
        };
        let durable: PullConsumer = self
            .js
            .create_consumer_on_stream(config, &self.settings.nats_stream)
            .await
            .with_context(|| format!("the durable consumer {}", self.consumer.name))?;
        let messages = durable
            .stream()
            .max_messages_per_batch(self.settings.batch_size.clamp(1, PULL_BATCH_MAX) as usize)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await?;
        Ok(messages)
    }

    async fn consume(&self, mut messages: pull::Stream, token: &CancellationToken) -> Ended {
        let mut missed_heartbeats = 0;
        loop {
            // A message being handled is finished, not dropped: shutdown
            // waits for it, and only a crash leaves it to redelivery.
            let next = tokio::select! {
                _ = token.cancelled() => return Ended::Cancelled,
                next = messages.next() => next,
            };
            let error = match next {
                Some(Ok(message)) => {
                    missed_heartbeats = 0;
                    // Take what else has already arrived: one transaction
                    // for the lot instead of a commit per message.
                    let mut batch = vec![message];
                    while batch.len() < self.settings.batch_size as usize {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(message))) => batch.push(message),
                            _ => break,
                        }
                    }
                    self.handle_batch(batch).await;
                    continue;
                }
                Some(Err(error)) => error,
                None => return Ended::Broken,
            };
            let broken = match error.kind() {
                PullErrorKind::MissingHeartbeat => {
                    missed_heartbeats += 1;
                    missed_heartbeats >= MISSED_HEARTBEATS_MAX
                }
                PullErrorKind::ConsumerDeleted
                | PullErrorKind::PushBasedConsumer
                | PullErrorKind::NoResponders
                | PullErrorKind::RequestLimitExceeded => true,
                PullErrorKind::Pull | PullErrorKind::Other => false,
            };
            tracing::warn!(consumer = %self.consumer.name, error = %error, "JetStream pull failed");
            if broken {
                return Ended::Broken;
            }
        }
    }

    /// Delivers `batch` in one transaction when its handlers all succeed,
    /// then acknowledges it; otherwise message by message.
    async fn handle_batch(&self, batch: Vec<js::Message>) {
        if batch.len() == 1 {
            return self.handle(&batch[0]).await;
        }
        let mut events = Vec::with_capacity(batch.len());
        for message in &batch {
            match decode(&message.payload) {
                Ok(event) if self.consumer.handles(&event.event_type) => events.push(event),
                // Undecodable or not ours: the one-by-one path settles it.
                _ => return self.handle_each(&batch).await,
            }
        }
        let work = deliver::deliver_batch(&self.pool, &self.consumer, &events);
        match self.keeping(&batch, work).await {
            Ok(true) => {
                for message in &batch {
                    settle(message, AckKind::Ack).await;
                }
            }
            Ok(false) => self.handle_each(&batch).await,
            Err(error) => {
                tracing::error!(
                    consumer = %self.consumer.name, error = format!("{error:#}"),
                    "event batch failed; JetStream will redeliver it"
                );
                for message in &batch {
                    settle(message, AckKind::Nak(Some(NAK_DELAY))).await;
                }
            }
        }
    }

    async fn handle_each(&self, batch: &[js::Message]) {
        for message in batch {
            self.handle(message).await;
        }
    }

    /// Delivers one message and settles it with JetStream.
    async fn handle(&self, message: &js::Message) {
        let event = match decode(&message.payload) {
            Ok(event) => event,
            Err(error) => {
                // Not ours to handle, and it never will be: stop redelivery.
                tracing::error!(consumer = %self.consumer.name, subject = %message.subject, error = %error, "undecodable event message");
                settle(message, AckKind::Term).await;
                return;
            }
        };
        // The server filters on 2.10+; an older one may send more.
        if !self.consumer.handles(&event.event_type) {
            settle(message, AckKind::Ack).await;
            return;
        }
        let work = deliver::deliver(&self.pool, &self.consumer, &event, 0, &self.settings);
        match self.keeping(std::slice::from_ref(message), work).await {
            // Handled, a duplicate, or failed and now owned by the retry lane.
            Ok(_) => settle(message, AckKind::Ack).await,
            Err(error) => {
                tracing::error!(
                    consumer = %self.consumer.name, event.id = %event.id, error = format!("{error:#}"),
                    "event delivery failed; JetStream will redeliver it"
                );
                settle(message, AckKind::Nak(Some(NAK_DELAY))).await;
            }
        }
    }

    /// Runs `work`, telling JetStream the `messages` are still in hand
    /// while slow handlers run, so they are not sent to another worker.
    async fn keeping<T>(
        &self,
        messages: &[js::Message],
        work: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let every = (self.tuning.ack_wait / 2).max(Duration::from_millis(100));
        let mut progress = tokio::time::interval(every);
        progress.tick().await;
        loop {
            tokio::select! {
                outcome = &mut work => return outcome,
                _ = progress.tick() => {
                    for message in messages {
                        settle(message, AckKind::Progress).await;
                    }
                }
            }
        }
    }
}

/// Sends an ack of `kind`; a lost one only means a redelivery, which the
/// processed-event keys make harmless.
async fn settle(message: &js::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(subject = %message.subject, error = %error, "cannot acknowledge a JetStream message");
    }
}

fn decode(bytes: &[u8]) -> serde_json::Result<Event> {
    serde_json::from_slice(bytes)
}

// -------------------------------------------------------------- filters

/// What a durable consumer takes from the stream: one subject, or several
/// where the server supports it.
#[derive(Debug, PartialEq, Eq)]
struct Filter {
    subject: String,
    subjects: Vec<String>,
}

/// The stream subjects `topic` covers. JetStream's `*` is one token and
/// `>` the rest, so the family `booking.*` (any type starting with
/// `booking.`) is `<prefix>.booking.>`. A `*` inside a token has no
/// subject: it takes everything and the worker filters.
fn topic_subject(settings: &Settings, topic: &str) -> String {
    match topic.strip_suffix('*') {
        Some(family) if family.ends_with('.') => subject(settings, &format!("{family}>")),
        Some(_) => subject(settings, ">"),
        None => subject(settings, topic),
    }
}

/// The consumer's filter: its topics' subjects without overlaps (a server
/// rejects overlapping filters). Several subjects need a 2.10 server;
/// before that, a consumer of several topics takes everything.
fn filter(settings: &Settings, consumer: &Consumer, several: bool) -> Filter {
    let all: Vec<String> = consumer
        .topics
        .iter()
        .map(|topic| topic_subject(settings, topic))
        .collect();
    let mut subjects: Vec<String> = all
        .iter()
        .filter(|s| !all.iter().any(|wider| covers(wider, s)))
        .cloned()
        .collect();
    subjects.sort();
    subjects.dedup();
    match subjects.len() {
        0 | 1 => Filter {
            subject: subjects.pop().unwrap_or_else(|| subject(settings, ">")),
            subjects: Vec::new(),
        },
        _ if several => Filter {
            subject: String::new(),
            subjects,
        },
        _ => Filter {
            subject: subject(settings, ">"),
            subjects: Vec::new(),
        },
    }
}

/// Whether the subject filter `wider` takes everything `narrower` does,
/// and more.
fn covers(wider: &str, narrower: &str) -> bool {
    wider != narrower
        && wider
            .strip_suffix('>')
            .is_some_and(|stem| narrower.starts_with(stem))
}

/// Whether a server of `version` takes several filter subjects (2.10+).
fn supports_filters(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait::async_trait]
    impl crate::Handler for Nothing {
        async fn handle(&self, _: &mut crate::Context<'_>, _: &Event) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn settings() -> Settings {
        Settings {
            batch_size: 10,
            nats_stream: "S".into(),
            nats_subject_prefix: "p".into(),
            poll_interval: Duration::from_millis(10),
            max_attempts: 3,
            retry: TROUBLE,
        }
    }

    fn consumer(topics: &[&str]) -> Consumer {
        topics
            .iter()
            .fold(Consumer::new("c", Nothing), |c, topic| c.on(topic))
    }

    fn one(subject: &str) -> Filter {
        Filter {
            subject: subject.into(),
            subjects: Vec::new(),
        }
    }

    #[test]
    fn topics_become_subjects() {
        let s = settings();
        assert_eq!(topic_subject(&s, "*"), "p.>");
        assert_eq!(topic_subject(&s, "booking.*"), "p.booking.>");
        assert_eq!(topic_subject(&s, "booking.approved"), "p.booking.approved");
        assert_eq!(topic_subject(&s, "book*"), "p.>");
    }

    #[test]
    fn filters_drop_overlaps_and_need_a_recent_server_for_several() {
        let s = settings();
        assert_eq!(
            filter(&s, &consumer(&["booking.*", "booking.approved"]), true),
            one("p.booking.>")
        );
        assert_eq!(
            filter(&s, &consumer(&["*", "user.registered"]), true),
            one("p.>")
        );
        assert_eq!(
            filter(&s, &consumer(&["user.registered", "booking.*"]), true),
            Filter {
                subject: String::new(),
                subjects: vec!["p.booking.>".into(), "p.user.registered".into()],
            }
        );
        assert_eq!(
            filter(&s, &consumer(&["user.registered", "booking.*"]), false),
            one("p.>")
        );
        assert_eq!(filter(&s, &consumer(&[]), true), one("p.>"));
    }

    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert!(!supports_filters("2.9.10"));
        assert!(supports_filters("2.10.0"));
        assert!(supports_filters("2.11.3-beta"));
        assert!(supports_filters("3.0.0"));
        assert!(!supports_filters(""));
    }

    #[test]
    fn relayed_events_decode_back() {
        let event = Event {
            id: uuid::Uuid::now_v7(),
            position: 7,
            event_type: "booking.approved".into(),
            aggregate_type: "booking".into(),
            aggregate_id: "b1".into(),
            payload: serde_json::json!({"k": "v"}),
            occurred_at: chrono::Utc::now(),
        };
        let back = decode(&serde_json::to_vec(&event).unwrap()).unwrap();
        assert_eq!(back.id, event.id);
        assert_eq!(back.event_type, event.event_type);
        assert_eq!(back.payload, event.payload);
        assert_eq!(back.occurred_at, event.occurred_at);
    }
}
