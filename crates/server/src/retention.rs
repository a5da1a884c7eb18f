//! The daily retention job: data kept only as long as the retention policy
//! says (docs/adr/0011), each module purging its own tables.
//!
//! - outbox events and processed-event keys: `RETENTION_EVENTS_DAYS`;
//! - read notifications and finished deliveries: `RETENTION_NOTIFICATIONS_DAYS`;
//! - expired sign-in state (refresh tokens, verification codes, OIDC logins):
//!   the identity module's own rules.
//!
//! Idempotency keys have their own hourly purge (`platform.purge_idempotency_keys`).

use rentify_platform::{
    config::Config,
    jobs::{Job, To, Workers},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// What the job deletes, from the configuration at scheduling time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Retention {
    pub events_days: u32,
    pub notifications_days: u32,
}

pub struct RetentionJob(Job<Retention, ()>);

impl RetentionJob {
    /// Builds the job and (re)installs its schedule: daily at 03:15 UTC.
    pub async fn build(pool: PgPool, config: &Config) -> anyhow::Result<Self> {
        let job = Job::builder()
            .step(|mut cx, policy: Retention| async move {
                let deleted = purge(&mut cx.tx, &policy).await?;
                cx.tx.commit().await?;
                tracing::info!(?deleted, "retention purge done");
                To::done()
            })
            .name("platform.retention")
            .pool(pool)
            .build()
            .await?;
        let daily = "0 15 3 * * *[UTC]".parse()?;
        job.schedule(
            &daily,
            &Retention {
                events_days: config.retention_events_days,
                notifications_days: config.retention_notifications_days,
            },
        )
        .await?;
        Ok(Self(job))
    }

    pub fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.0);
    }
}

/// Rows deleted by one purge, per kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub events: u64,
    pub processed_event_keys: u64,
    pub notifications: u64,
    pub identity: u64,
}

/// Runs every module's purge on `conn` (the job's transaction).
pub async fn purge(conn: &mut sqlx::PgConnection, policy: &Retention) -> sqlx::Result<Deleted> {
    let (events, processed_event_keys) =
        rentify_events::retention::purge(conn, policy.events_days).await?;
    let notifications =
        rentify_notifications::purge_expired(conn, policy.notifications_days).await?;
    let identity = rentify_identity::retention::purge_expired(conn).await?;
    Ok(Deleted {
        events,
        processed_event_keys,
        notifications,
        identity,
    })
}
