//! `rentify worker`: durable jobs and schedules (event consumers join in the
//! events issue). Workers are stateless; run as many as needed.

use std::future::Future;

use rentify_platform::{
    config::Config,
    db,
    jobs::{PlatformJobs, Workers},
};

/// Runs every job until `shutdown` resolves, then drains.
pub async fn run_until(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let pool = db::connect(&config).await?;
    let mut workers = Workers::new(config.worker_concurrency, config.job_poll_interval());
    let platform = PlatformJobs::build(pool.clone(), config.idempotency_ttl_hours).await?;
    platform.spawn(&mut workers);
    tracing::info!(concurrency = config.worker_concurrency, "workers running");
    shutdown.await;
    workers.shutdown(config.shutdown_grace()).await;
    pool.close().await;
    Ok(())
}
