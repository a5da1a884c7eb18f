//! The PostgreSQL pool and the migrations (ours and the job queue's).

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::config::Config;

/// Every migration of the monolith, in `migrations/` at the workspace root.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// A pooled connection idle for longer than this is pinged before it is
/// handed out again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connects the pool, failing fast with the reason when PostgreSQL is down.
///
/// Connections are pinged before use only when they sat idle for a while
/// ([`PING_IF_IDLE_FOR`]), not every time (sqlx's `test_before_acquire`):
/// the ping is a full round trip, which doubled the cost of a one-statement
/// request such as a booking attempt (ADR 0008). Under load connections are
/// never idle that long; after an outage they are. A dead connection that
/// slips through fails its query with a 503 (`Retry-After: 1`), is dropped
/// by the pool, and the retry gets a fresh one.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    use sqlx::Connection;
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect(config.database_url.expose_secret())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL (DATABASE_URL): {e}"))?;
    Ok(pool)
}

/// Applies pending migrations. Safe to run from several processes at once:
/// both migrators take an advisory lock.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    underway::run_migrations(pool).await?;
    Ok(())
}
