//! `rentify seed --demo`: a small, realistic marketplace for `make run`.
//! Idempotent: running it twice leaves the same data.

use rentify_platform::{
    PlatformState,
    auth::Role,
    config::{AppEnv, Config},
};
use sqlx::PgPool;

/// Password of every demo account (documented in the README; demo only).
pub const DEMO_PASSWORD: &str = "rentify-demo-2026";

/// Demo accounts: (email, display name, extra roles).
pub const DEMO_ACCOUNTS: &[(&str, &str, &[Role])] = &[
    ("admin@rentify.test", "Rentify Admin", &[Role::Admin]),
    ("olivia@rentify.test", "Olivia (owner)", &[Role::Owner]),
    ("ravi@rentify.test", "Ravi (renter)", &[]),
];

/// Loads the demo data. Each module adds its part here as it lands.
pub async fn demo(config: Config, pool: &PgPool) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.app_env != AppEnv::Production,
        "refusing to load demo accounts with a published password when APP_ENV=production"
    );
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('public.users') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        migrated,
        "the database is not migrated: run `rentify migrate` first"
    );
    let state = PlatformState::build(config, pool.clone()).await?;
    let identity = rentify_identity::Identity::init(&state).await?;
    let mut owner = None;
    let mut renter = None;
    for (email, name, roles) in DEMO_ACCOUNTS {
        let id = rentify_identity::admin::ensure_demo_account(
            &identity,
            email,
            DEMO_PASSWORD,
            name,
            roles,
        )
        .await
        .map_err(|e| anyhow::anyhow!("demo account {email}: {e}"))?;
        if roles.contains(&Role::Owner) {
            owner = Some(id);
        } else if roles.is_empty() {
            renter = Some(id);
        }
    }
    let owner = owner.ok_or_else(|| anyhow::anyhow!("the demo accounts have no owner"))?;
    let mut conn = pool.acquire().await?;
    let listings = rentify_listings::demo::ensure_listings(&mut conn, owner).await?;
    // The renter pays with the sandbox's Visa; the owner is paid out to the
    // sandbox's bank.
    let payments = rentify_payments::Payments::init(&state).await?;
    if let Some(renter) = renter {
        rentify_payments::demo::ensure_card(&payments, renter, "tok_visa").await?;
    }
    rentify_payments::demo::ensure_payout_account(&payments, owner, "btok_ok").await?;
    tracing::info!(
        accounts = DEMO_ACCOUNTS.len(),
        new_listings = listings,
        "demo data loaded"
    );
    Ok(())
}
