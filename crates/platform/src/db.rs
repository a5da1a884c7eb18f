//! The PostgreSQL pool and the migrations (ours and the job queue's).

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::config::Config;

/// Every migration of the monolith, in `migrations/` at the workspace root.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Connects the pool, failing fast with the reason when PostgreSQL is down.
///
/// Connections are not pinged before each use (`test_before_acquire`): the
/// ping is a full round trip, which doubled the cost of a one-statement
/// request such as a booking attempt. A connection that died (database
/// restart) fails its next query instead, is dropped by the pool, and that
/// one request answers 503; `/health/ready` notices the outage on its own.
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
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
