//! New in-app notifications, live: `GET /v1/notifications/stream` (Server-
//! Sent Events), across every API process.
//!
//! The dispatcher may run in a worker process while the user's stream is
//! held by any API process, so a new notification is announced on a channel
//! every API process listens to:
//! - with `REDIS_URL`, Redis pub/sub, published once the dispatcher's
//!   transaction committed (so nothing that rolls back is announced);
//! - without it, PostgreSQL `NOTIFY`, sent inside that transaction (it is
//!   delivered at commit, and only then).
//!
//! Each API process holds one subscription, opened by its first stream, and
//! fans messages out to its streams through a `tokio::sync::broadcast`; each
//! stream keeps its own user's. A stream reconnecting with `Last-Event-ID`
//! first gets what it missed (up to 50).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::{
    Extension,
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::{Stream, StreamExt};
use rentify_platform::{
    ApiError, ApiResult, PlatformState, auth::UserCaller, error::ErrorEnvelope,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{OnceCell, broadcast};
use uuid::Uuid;

use crate::{
    Notifications,
    model::{self, Notification},
};

/// The PostgreSQL channel (per database, like every `NOTIFY`).
const PG_CHANNEL: &str = "rentify_notifications";
/// `NOTIFY` payloads must stay under 8000 bytes; a larger notification is
/// announced by id and read back by the listener.
const PG_PAYLOAD_MAX: usize = 7_900;
/// Messages a slow stream may fall behind by before it is told to resync.
const BUFFER: usize = 1_024;
/// Notifications replayed to a stream reconnecting with `Last-Event-ID`.
const REPLAY_MAX: i64 = 50;

/// A new notification, as announced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LiveMessage {
    pub user_id: Uuid,
    pub id: Uuid,
    /// The notification's JSON; `None` when too large to announce whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<serde_json::Value>,
}

impl LiveMessage {
    pub fn of(user_id: Uuid, notification: &Notification) -> Self {
        Self {
            user_id,
            id: notification.id,
            notification: serde_json::to_value(notification).ok(),
        }
    }
}

/// Work to run once the announcing transaction committed.
pub(crate) type AfterCommit = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

enum Fanout {
    Postgres,
    Redis {
        client: redis::Client,
        publisher: redis::aio::ConnectionManager,
        /// Namespaced by database, so deployments (and test databases)
        /// sharing a Redis do not hear each other.
        channel: String,
    },
}

/// This process's side of the fan-out.
pub(crate) struct Live {
    fanout: Fanout,
    db: PgPool,
    sender: Arc<broadcast::Sender<Arc<LiveMessage>>>,
    subscribed: OnceCell<()>,
}

impl Live {
    pub async fn new(state: &PlatformState) -> anyhow::Result<Self> {
        let fanout = match (&state.config.redis_url, &state.redis) {
            (Some(url), Some(publisher)) => {
                let database: String = sqlx::query_scalar("SELECT current_database()")
                    .fetch_one(&state.db)
                    .await?;
                Fanout::Redis {
                    client: redis::Client::open(url.expose_secret())?,
                    publisher: publisher.clone(),
                    channel: format!("rentify:notifications:{database}"),
                }
            }
            _ => Fanout::Postgres,
        };
        Ok(Self {
            fanout,
            db: state.db.clone(),
            sender: Arc::new(broadcast::channel(BUFFER).0),
            subscribed: OnceCell::new(),
        })
    }

    /// Announces `messages` from the transaction on `conn`: `NOTIFY` now
    /// (sent at commit), or the Redis publication to run after the commit.
    pub async fn announce(
        &self,
        conn: &mut PgConnection,
        messages: Vec<LiveMessage>,
    ) -> anyhow::Result<Option<AfterCommit>> {
        if messages.is_empty() {
            return Ok(None);
        }
        match &self.fanout {
            Fanout::Postgres => {
                for message in &messages {
                    let mut payload = serde_json::to_string(message)?;
                    if payload.len() > PG_PAYLOAD_MAX {
                        payload = serde_json::to_string(&LiveMessage {
                            notification: None,
                            ..message.clone()
                        })?;
                    }
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(PG_CHANNEL)
                        .bind(payload)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(None)
            }
            Fanout::Redis {
                publisher, channel, ..
            } => {
                let mut publisher = publisher.clone();
                let channel = channel.clone();
                Ok(Some(Box::pin(async move {
                    for message in messages {
                        let Ok(payload) = serde_json::to_string(&message) else {
                            continue;
                        };
                        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                            .arg(&channel)
                            .arg(payload)
                            .query_async(&mut publisher)
                            .await;
                        // Live pushes are best effort: the notification is
                        // in the list whatever happens here.
                        if let Err(error) = published {
                            tracing::warn!(%error, notification.id = %message.id, "live notification not published");
                        }
                    }
                })))
            }
        }
    }

    /// A receiver of every announced notification, once this process
    /// listens (the first call opens the subscription).
    pub async fn subscribe(&self) -> anyhow::Result<broadcast::Receiver<Arc<LiveMessage>>> {
        self.subscribed.get_or_try_init(|| self.listen()).await?;
        Ok(self.sender.subscribe())
    }

    async fn listen(&self) -> anyhow::Result<()> {
        let sender = Arc::downgrade(&self.sender);
        match &self.fanout {
            Fanout::Postgres => {
                let mut listener = sqlx::postgres::PgListener::connect_with(&self.db).await?;
                listener.listen(PG_CHANNEL).await?;
                tokio::spawn(pg_loop(listener, sender));
            }
            Fanout::Redis {
                client, channel, ..
            } => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                tokio::spawn(redis_loop(pubsub, client.clone(), channel.clone(), sender));
            }
        }
        Ok(())
    }
}

/// Parses and forwards one announcement; `false` once nobody can listen any more.
fn forward(sender: &Weak<broadcast::Sender<Arc<LiveMessage>>>, payload: &str) -> bool {
    let Some(sender) = sender.upgrade() else {
        return false;
    };
    match serde_json::from_str::<LiveMessage>(payload) {
        // No receiver at the moment is fine.
        Ok(message) => {
            let _ = sender.send(Arc::new(message));
        }
        Err(error) => tracing::warn!(%error, "unreadable live notification"),
    }
    true
}

async fn pg_loop(
    mut listener: sqlx::postgres::PgListener,
    sender: Weak<broadcast::Sender<Arc<LiveMessage>>>,
) {
    loop {
        match listener.recv().await {
            Ok(notification) => {
                if !forward(&sender, notification.payload()) {
                    return;
                }
            }
            // `recv` reconnects (and listens again) on the next call.
            Err(error) => {
                if sender.strong_count() == 0 {
                    return;
                }
                tracing::warn!(%error, "live notifications: PostgreSQL listener lost; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn redis_loop(
    mut pubsub: redis::aio::PubSub,
    client: redis::Client,
    channel: String,
    sender: Weak<broadcast::Sender<Arc<LiveMessage>>>,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                if !forward(&sender, &payload) {
                    return;
                }
            }
        }
        // The connection dropped: subscribe again, until it works.
        loop {
            if sender.strong_count() == 0 {
                return;
            }
            tracing::warn!("live notifications: Redis subscription lost; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
            match client.get_async_pubsub().await {
                Ok(mut fresh) => {
                    if fresh.subscribe(&channel).await.is_ok() {
                        pubsub = fresh;
                        break;
                    }
                }
                Err(error) => tracing::warn!(%error, "live notifications: Redis unreachable"),
            }
        }
    }
}

/// An SSE `notification` event.
fn event_of(id: Uuid, notification: &serde_json::Value) -> Event {
    Event::default()
        .event("notification")
        .id(id.to_string())
        .data(notification.to_string())
}

/// The caller's new in-app notifications as they are made: Server-Sent
/// Events named `notification`, each with the notification's JSON (as in the
/// list) and its id as the event id; a `resync` event if the stream fell
/// behind (list to catch up); comments as keep-alives every 15 s.
#[utoipa::path(
    get, path = "/v1/notifications/stream", tag = "notifications",
    security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header,
            description = "The last notification id received: the ones made since (up to 50) are sent first")),
    responses(
        (status = 200, description = "`text/event-stream` of `notification` events", content_type = "text/event-stream", body = Notification),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: an API key", body = ErrorEnvelope),
        (status = 503, description = "`live_unavailable`: this process cannot listen right now", body = ErrorEnvelope),
    )
)]
pub async fn stream_notifications(
    Extension(notifications): Extension<Notifications>,
    caller: UserCaller,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let user_id = caller.user_id;
    let live = notifications.live();
    let receiver = live.subscribe().await.map_err(|error| {
        tracing::warn!(error = %format!("{error:#}"), "live notifications unavailable");
        ApiError::unavailable(
            "live_unavailable",
            "live notifications are unavailable right now; list them instead",
        )
        .with_retry_after(5)
    })?;
    // Subscribed first, then the replay: a notification made in between is
    // in both, and the client keeps the first (same event id).
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Uuid>().ok());
    let replay = match last_seen {
        Some(after) => {
            let mut conn = notifications.db().acquire().await?;
            model::since(&mut conn, user_id, after, REPLAY_MAX).await?
        }
        None => Vec::new(),
    };
    let replayed_up_to = replay.last().map(|n| n.id).or(last_seen);
    let replay = futures::stream::iter(
        replay
            .into_iter()
            .filter_map(|n| serde_json::to_value(&n).ok().map(|v| (n.id, v)))
            .map(|(id, v)| Ok(event_of(id, &v))),
    );
    let state = LiveStream {
        receiver,
        user_id,
        replayed_up_to,
        db: notifications.db().clone(),
        platform: notifications.platform().clone(),
    };
    let live = futures::stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        Some((Ok(event), state))
    });
    Ok(Sse::new(replay.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct LiveStream {
    receiver: broadcast::Receiver<Arc<LiveMessage>>,
    user_id: Uuid,
    replayed_up_to: Option<Uuid>,
    db: PgPool,
    platform: PlatformState,
}

impl LiveStream {
    /// The next event for this stream; `None` ends it (the process is
    /// shutting down, or the subscription is gone).
    async fn next(&mut self) -> Option<Event> {
        let mut draining = tokio::time::interval(Duration::from_secs(1));
        loop {
            let message = tokio::select! {
                received = self.receiver.recv() => received,
                _ = draining.tick() => {
                    // Streams never end by themselves: end them when the
                    // process drains, so shutdown does not wait for them.
                    if self.platform.is_draining() {
                        return None;
                    }
                    continue;
                }
            };
            match message {
                Ok(message) if message.user_id == self.user_id => {
                    // UUIDv7 ids grow with time: older ones were replayed.
                    if self.replayed_up_to.is_some_and(|up_to| message.id <= up_to) {
                        continue;
                    }
                    let value = match &message.notification {
                        Some(value) => value.clone(),
                        None => {
                            let mut conn = self.db.acquire().await.ok()?;
                            let found = model::find(&mut conn, self.user_id, message.id)
                                .await
                                .ok()
                                .flatten();
                            match found.and_then(|n| serde_json::to_value(n).ok()) {
                                Some(value) => value,
                                None => continue,
                            }
                        }
                    };
                    return Some(event_of(message.id, &value));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(
                        Event::default()
                            .event("resync")
                            .data(serde_json::json!({ "missed": missed }).to_string()),
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
