//! `rentify worker`: durable jobs and schedules (event consumers join in the
//! events issue). Workers are stateless; run as many as needed. A standalone
//! worker also serves `/health/*` and `/metrics` on `PORT` for its probes.

use std::{future::Future, net::SocketAddr};

use secrecy::ExposeSecret;
use sqlx::PgPool;

use rentify_platform::{
    PlatformState,
    config::{Config, Switch},
    http,
    jobs::{PlatformJobs, Workers},
};

/// Whether the worker serves its own health and metrics port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpsPort {
    /// `rentify worker`: bind `HOST:PORT` for probes and scraping.
    Serve,
    /// `rentify all`: the API in the same process already serves them.
    Shared,
}

/// Connections every job holds for as long as it runs: its worker's
/// LISTEN connection and its scheduler's advisory lock.
const HELD_PER_JOB: u32 = 2;
/// Jobs this process runs (platform purge and retention, thumbnails,
/// approval timer, request sweep, booking money, payouts, reconciliation)
/// besides the notifications and reviews jobs (counted by their modules);
/// keep in step with the `spawn` calls below.
const JOBS: u32 = 8;
/// Connections an event consumer may hold at once: its batch's and a
/// retry's.
const HELD_PER_CONSUMER: u32 = 2;

/// Runs every job until `shutdown` resolves, then drains. The jobs get
/// their own pool, to the database of `pool`, sized for the connections
/// they hold plus `WORKER_CONCURRENCY` running tasks per job, so they never
/// starve the API that shares the process in `rentify all` (nor the other
/// way round). The caller owns `pool`.
pub async fn run_until(
    config: Config,
    pool: PgPool,
    ops: OpsPort,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let api_pool = pool;
    // The payments module calls the gateway from its jobs; its sandbox
    // delivers webhooks to the API (PAYMENTS_WEBHOOK_URL).
    let module_state = PlatformState::build(config.clone(), api_pool.clone()).await?;
    let identity = rentify_identity::Identity::init(&module_state).await?;
    let notifications = rentify_notifications::Notifications::init(&module_state, identity).await?;
    let consumers = crate::consumers::all(&notifications);
    let jobs =
        JOBS + rentify_notifications::NotificationJobs::COUNT + rentify_reviews::ReviewJobs::COUNT;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(
            jobs * (HELD_PER_JOB + config.worker_concurrency as u32)
                + consumers.len() as u32 * HELD_PER_CONSUMER,
        )
        .min_connections(0)
        .connect_with((*api_pool.connect_options()).clone())
        .await?;
    let mut workers = Workers::new(config.worker_concurrency, config.job_poll_interval());
    let platform = PlatformJobs::build(pool.clone(), config.idempotency_ttl_hours).await?;
    platform.spawn(&mut workers);
    crate::retention::RetentionJob::build(pool.clone(), &config)
        .await?
        .spawn(&mut workers);
    let media = rentify_listings::media::Media::init(&config, pool.clone()).await?;
    media.spawn(&mut workers);
    let payments = rentify_payments::Payments::init(&module_state).await?;
    payments.jobs_on(pool.clone()).await?.spawn(&mut workers);
    rentify_bookings::BookingJobs::build(pool.clone(), payments.jobs().clone())
        .await?
        .spawn(&mut workers);
    notifications
        .jobs_on(pool.clone())
        .await?
        .spawn(&mut workers);
    rentify_reviews::ReviewJobs::build(pool.clone())
        .await?
        .spawn(&mut workers);
    let consumers = rentify_events::Runtime::start_tuned(
        pool.clone(),
        consumers,
        rentify_events::Settings::from_config(&config),
        config.nats_url.as_ref().map(|url| url.expose_secret()),
        rentify_events::jetstream::Tuning::from_config(&config),
    )
    .await?;

    let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops_server = match ops {
        OpsPort::Serve => {
            // Workers are not rate limited: only probes and scrapers call them.
            let ops_config = Config {
                rate_limits: Switch::Off,
                ..config.clone()
            };
            let state = PlatformState::build(ops_config, api_pool.clone()).await?;
            let addr = SocketAddr::new(config.host, config.port);
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot bind {addr} (HOST/PORT) for worker health: {e}")
            })?;
            let (router, _) = crate::app::ops_routes().split_for_parts();
            let router = http::apply(router, &state).with_state(state);
            tracing::info!(%addr, "worker health and metrics served");
            Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = ops_stopped.await;
                    })
                    .await
            }))
        }
        OpsPort::Shared => None,
    };

    tracing::info!(concurrency = config.worker_concurrency, "workers running");
    shutdown.await;
    consumers.shutdown(config.shutdown_grace()).await;
    workers.shutdown(config.shutdown_grace()).await;
    pool.close().await;
    let _ = stop_ops.send(());
    if let Some(server) = ops_server {
        server.await??;
    }
    Ok(())
}
