//! Domain events after the outbox (ADR 0011).
//!
//! Every module records its events in the `events` table in the same
//! transaction as the change ([`rentify_platform::outbox`]). This crate
//! delivers them to named [`Consumer`]s:
//!
//! - [`stream`]: in-process, each consumer reads the outbox from its own
//!   cursor, a batch per transaction (the default, and `rentify all`);
//! - [`jetstream`]: when `NATS_URL` is set, a relay publishes the outbox to
//!   NATS JetStream and consumers run as durable JetStream consumers shared
//!   by every worker process.
//!
//! Either way a handler runs at least once per event and its effect commits
//! with the consumer's processed-event key, so a redelivery has no second
//! effect. A failure is retried with exponential back-off and jitter
//! ([`retry`]) and, after `EVENTS_MAX_ATTEMPTS`, kept as a dead letter that
//! an operator can list and replay ([`dead_letters`]). [`backlog`] measures
//! how far behind the consumers are and turns a deep backlog into 503
//! `overloaded` for non-critical writes.

pub mod backlog;
pub mod dead_letters;
pub mod deliver;
pub mod jetstream;
pub mod retention;
pub mod retry;
pub mod stream;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rentify_platform::config::Config;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

pub use backlog::Backlog;

/// An event read from the outbox (or from JetStream, as the relay wrote it).
#[derive(Clone, Debug, Serialize, Deserialize, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    /// Order of insertion; the stream's order is `(tx_id, position)`.
    pub position: i64,
    /// `<aggregate>.<what happened>`, e.g. `booking.requested`.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

impl Event {
    /// The payload's `key` as a string, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.payload.get(key).and_then(|v| v.as_str())
    }

    /// The payload's `key` as a UUID, if it is one.
    pub fn uuid(&self, key: &str) -> Option<Uuid> {
        self.str(key).and_then(|s| s.parse().ok())
    }
}

/// Work to do once the handler's transaction has committed (a live push to
/// a browser, say): it must never announce what could still roll back.
pub type AfterCommit = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a handler gets besides the event: the transaction its effect must
/// be written in (it commits with the processed-event key) and a place for
/// post-commit work.
pub struct Context<'a> {
    pub tx: &'a mut PgConnection,
    /// How many times this event was attempted before (0 on the first try).
    pub attempt: u32,
    after_commit: &'a mut Vec<AfterCommit>,
}

impl<'a> Context<'a> {
    pub fn new(
        tx: &'a mut PgConnection,
        attempt: u32,
        after_commit: &'a mut Vec<AfterCommit>,
    ) -> Self {
        Self {
            tx,
            attempt,
            after_commit,
        }
    }

    /// Runs `work` after the transaction commits; dropped if it rolls back.
    pub fn after_commit(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        self.after_commit.push(Box::pin(work));
    }
}

/// A consumer's reaction to an event. Effects go through `cx.tx`; anything
/// outside the database must itself be idempotent or be queued (a durable
/// job enqueued in `cx.tx`), because an error or a crash runs the handler
/// again.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()>;
}

/// Which consumers go first when the system is behind: critical consumers
/// (payments, booking transitions) never wait; background ones (analytics,
/// clean-up) pause while a critical consumer has a backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Critical,
    Normal,
    Background,
}

/// A named reader of the event stream. The name is its identity: its
/// cursor, its processed-event keys, its JetStream durable consumer and its
/// dead letters are all filed under it, so renaming a consumer replays
/// history to it.
#[derive(Clone)]
pub struct Consumer {
    pub name: String,
    /// Event types handled: exact (`booking.approved`), a family
    /// (`booking.*`) or everything (`*`).
    pub topics: Vec<String>,
    pub priority: Priority,
    /// Whether a consumer that starts for the first time gets the stream's
    /// history (`true`, the default: a new projection back-fills) or only
    /// what happens from then on (a notifier must not announce last year's
    /// bookings on its first deployment).
    pub replay: bool,
    pub handler: Arc<dyn Handler>,
}

impl Consumer {
    pub fn new(name: impl Into<String>, handler: impl Handler) -> Self {
        let name = name.into();
        assert!(
            !name.is_empty()
                && !name.starts_with("__")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "a consumer's name is [A-Za-z0-9_-]+ (it names a JetStream durable consumer): {name}"
        );
        Self {
            name,
            topics: Vec::new(),
            priority: Priority::Normal,
            replay: true,
            handler: Arc::new(handler),
        }
    }

    /// Adds the event types this consumer handles.
    pub fn on(mut self, topic: &str) -> Self {
        assert!(
            topic == "*" || !topic.is_empty(),
            "a topic is an event type, `family.*` or `*`"
        );
        self.topics.push(topic.to_owned());
        self
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// On its first start, skip the history: begin with the events that
    /// happen from now on.
    pub fn from_now(mut self) -> Self {
        self.replay = false;
        self
    }

    /// Whether this consumer handles events of `event_type`.
    pub fn handles(&self, event_type: &str) -> bool {
        self.topics
            .iter()
            .any(|topic| topic_matches(topic, event_type))
    }

    /// The topics as SQL `LIKE` patterns (`booking.*` → `booking.%`).
    pub fn like_patterns(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|topic| match topic.strip_suffix('*') {
                Some(prefix) => format!("{}%", prefix.replace('_', "\\_")),
                None => topic.replace('_', "\\_"),
            })
            .collect()
    }
}

/// `booking.*` matches `booking.requested`; `*` matches everything.
pub fn topic_matches(topic: &str, event_type: &str) -> bool {
    match topic.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => topic == event_type,
    }
}

/// The tunables of delivery, from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub batch_size: u32,
    /// JetStream stream name (`NATS_STREAM`).
    pub nats_stream: String,
    /// Subjects are `<nats_subject_prefix>.<event type>`.
    pub nats_subject_prefix: String,
    pub poll_interval: Duration,
    pub max_attempts: u32,
    pub retry: retry::Backoff,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch_size: config.events_batch_size,
            nats_stream: config.nats_stream.clone(),
            nats_subject_prefix: config.nats_subject_prefix.clone(),
            poll_interval: Duration::from_millis(config.events_poll_ms),
            max_attempts: config.events_max_attempts,
            retry: retry::Backoff {
                base: Duration::from_millis(config.events_retry_base_ms),
                max: Duration::from_secs(config.events_retry_max_secs),
            },
        }
    }
}

/// The consumers of this process, running until [`Runtime::shutdown`].
pub struct Runtime {
    token: tokio_util::sync::CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl Runtime {
    /// Starts `consumers`: on JetStream when `nats_url` is given, otherwise
    /// in-process on the outbox.
    pub async fn start(
        pool: sqlx::PgPool,
        consumers: Vec<Consumer>,
        settings: Settings,
        nats_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_tuned(
            pool,
            consumers,
            settings,
            nats_url,
            jetstream::Tuning::default(),
        )
        .await
    }

    /// [`Runtime::start`] with JetStream's own knobs (the worker passes
    /// [`jetstream::Tuning::from_config`]).
    pub async fn start_tuned(
        pool: sqlx::PgPool,
        consumers: Vec<Consumer>,
        settings: Settings,
        nats_url: Option<&str>,
        tuning: jetstream::Tuning,
    ) -> anyhow::Result<Self> {
        let mut names = std::collections::HashSet::new();
        for consumer in &consumers {
            anyhow::ensure!(
                names.insert(consumer.name.clone()),
                "two consumers are named {}",
                consumer.name
            );
        }
        let token = tokio_util::sync::CancellationToken::new();
        let tasks = match nats_url {
            Some(url) => {
                jetstream::spawn_tuned(pool, url, consumers, settings, tuning, token.clone())
                    .await?
            }
            None => {
                // Cursors first: a consumer that starts "from now" must not
                // miss what is written while its task starts.
                for consumer in &consumers {
                    stream::register_consumer(&pool, consumer).await?;
                }
                stream::spawn(pool, consumers, settings, token.clone())
            }
        };
        Ok(Self { token, tasks })
    }

    /// Stops taking events and waits up to `grace` for the batches in
    /// flight; an unfinished batch rolls back and is handled again later.
    pub async fn shutdown(mut self, grace: Duration) {
        self.token.cancel();
        rentify_platform::jobs::drain(&mut self.tasks, grace, "event consumers").await;
    }

    /// Stops at once, as a crash would: batches in flight roll back.
    pub fn abort(mut self) {
        self.tasks.abort_all();
    }
}

/// The names of the cursors whose backlog counts for backpressure: the
/// consumers' in-process, the relay's on JetStream.
pub fn backlog_cursors(consumers: &[Consumer], nats: bool) -> Vec<String> {
    if nats {
        vec![jetstream::RELAY_CURSOR.to_owned()]
    } else {
        consumers.iter().map(|c| c.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_exactly_by_family_or_all() {
        assert!(topic_matches("booking.*", "booking.requested"));
        assert!(!topic_matches("booking.*", "bookings.requested"));
        assert!(topic_matches("booking.approved", "booking.approved"));
        assert!(!topic_matches("booking.approved", "booking.approved_late"));
        assert!(topic_matches("*", "user.registered"));
    }
}
