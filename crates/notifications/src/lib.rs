//! Notifications: what users are told, in the app and by email, SMS and push.
//!
//! - [`dispatch`]: the `notifications` event consumer (`booking.*`,
//!   `user.registered`, `user.erased`) makes notifications per the
//!   reactions in [`reactions`], in its own transaction, so a redelivered
//!   event makes nothing twice (`UNIQUE (event_id, user_id, type)`);
//! - [`preferences`]: channels per category, quiet hours, language;
//! - [`templates`]: the texts, per kind and locale (minijinja);
//! - [`delivery`] and [`transport`]: each outside channel's delivery, its
//!   tracking (queued → sent → delivered / failed) and retries;
//! - [`live`]: the SSE stream of new notifications, across processes;
//! - [`api`]: the caller's list and read marks.
//!
//! Handlers reach the module through `Extension<Notifications>`; the
//! server runs [`Notifications::consumers`] and the jobs of
//! [`Notifications::jobs_on`].

pub mod api;
pub mod delivery;
pub mod dispatch;
pub mod jobs;
pub mod live;
pub mod model;
pub mod preferences;
pub mod reactions;
pub mod templates;
pub mod transport;

use std::sync::Arc;

use rentify_events::{Consumer, Priority, retry::Backoff};
use rentify_identity::Identity;
use rentify_platform::{PlatformState, jobs::Workers};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use model::{Category, Channel, DeliveryStatus, Notification};

/// Every notifications route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(api::list_notifications))
        .routes(routes!(api::read_notification))
        .routes(routes!(
            preferences::get_preferences,
            preferences::put_preferences
        ))
        .routes(routes!(live::stream_notifications))
}

/// The notifications module's services.
#[derive(Clone)]
pub struct Notifications {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: PlatformState,
    identity: Identity,
    templates: templates::Templates,
    transports: transport::Transports,
    live: live::Live,
    /// On the module's own pool: for enqueueing in a caller's transaction.
    jobs: jobs::Jobs,
    /// Delivery retries: `NOTIFICATIONS_RETRY_BASE_MS`, doubling up to
    /// `NOTIFICATIONS_RETRY_MAX_SECS`.
    retry: Backoff,
}

impl Notifications {
    /// Compiles the templates, connects the email transport (`SMTP_URL`,
    /// else the development one) and prepares the live fan-out (Redis with
    /// `REDIS_URL`, else PostgreSQL).
    /// `identity` is the process's identity module (addresses are looked
    /// up through it), not a second one built here.
    pub async fn init(state: &PlatformState, identity: Identity) -> anyhow::Result<Self> {
        let templates = templates::Templates::new()?;
        let transports = transport::Transports::from_config(&state.config, state.db.clone())?;
        let live = live::Live::new(state).await?;
        let jobs = jobs::Jobs::build(state.db.clone()).await?;
        let retry = Backoff {
            base: std::time::Duration::from_millis(state.config.notifications_retry_base_ms),
            max: std::time::Duration::from_secs(state.config.notifications_retry_max_secs),
        };
        let inner = Arc::new(Inner {
            state: state.clone(),
            identity,
            templates,
            transports,
            live,
            jobs,
            retry,
        });
        inner.jobs.state.set(&inner);
        Ok(Self { inner })
    }

    /// The module's event consumers (the dispatcher).
    pub fn consumers(&self) -> Vec<Consumer> {
        vec![
            Consumer::new(
                "notifications",
                dispatch::Dispatcher {
                    notifications: self.clone(),
                },
            )
            .on("booking.*")
            .on("user.registered")
            .on("user.erased")
            .priority(Priority::Normal)
            // A first deployment must not announce every past booking.
            .from_now(),
        ]
    }

    /// The module's durable jobs on `pool` (a worker's own pool, so running
    /// jobs never starve the API's connections), bound to this module.
    pub async fn jobs_on(&self, pool: PgPool) -> anyhow::Result<NotificationJobs> {
        let jobs = jobs::Jobs::build(pool).await?;
        jobs.state.set(&self.inner);
        Ok(NotificationJobs(jobs))
    }

    pub fn db(&self) -> &PgPool {
        &self.inner.state.db
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub(crate) fn templates(&self) -> &templates::Templates {
        &self.inner.templates
    }

    pub(crate) fn transports(&self) -> &transport::Transports {
        &self.inner.transports
    }

    pub(crate) fn live(&self) -> &live::Live {
        &self.inner.live
    }

    pub(crate) fn jobs(&self) -> &jobs::Jobs {
        &self.inner.jobs
    }

    pub(crate) fn retry(&self) -> &Backoff {
        &self.inner.retry
    }
}

/// The notifications jobs (deliveries, review prompts).
pub struct NotificationJobs(jobs::Jobs);

impl NotificationJobs {
    /// How many jobs [`NotificationJobs::spawn`] starts.
    pub const COUNT: u32 = 2;

    pub fn spawn(&self, workers: &mut Workers) {
        self.0.spawn(workers);
    }
}

/// Deletes read notifications and finished deliveries older than `days`
/// (the retention job calls it daily). Returns the rows deleted.
pub async fn purge_expired(conn: &mut sqlx::PgConnection, days: u32) -> sqlx::Result<u64> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let deliveries = sqlx::query(
        "DELETE FROM notification_deliveries
          WHERE status <> 'queued' AND updated_at < now() - make_interval(days => $1)",
    )
    .bind(days)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // A read notification with a delivery still waiting stays until it left.
    let notifications = sqlx::query(
        "DELETE FROM notifications n
          WHERE n.read_at IS NOT NULL AND n.created_at < now() - make_interval(days => $1)
            AND NOT EXISTS (SELECT 1 FROM notification_deliveries d
                             WHERE d.notification_id = n.id AND d.status = 'queued')",
    )
    .bind(days)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(deliveries + notifications)
}
