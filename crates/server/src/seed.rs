//! `rentify seed --demo`: a small, realistic marketplace for `make run`.
//! Idempotent: running it twice leaves the same data.

use sqlx::PgPool;

/// Loads the demo data. Each module adds its part here as it lands.
pub async fn demo(pool: &PgPool) -> anyhow::Result<()> {
    // The foundation has no domain data of its own yet; check the schema is
    // there so a forgotten `migrate` is reported clearly.
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('public.events') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        migrated,
        "the database is not migrated: run `rentify migrate` first"
    );
    tracing::info!("demo data loaded");
    Ok(())
}
