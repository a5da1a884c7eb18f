//! The platform's shared state: what every handler and middleware may need.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::{
    auth::SharedAuthenticator,
    config::Config,
    http::metrics,
    ratelimit::{MemoryStore, PenaltyPolicy, RateLimitStore, RateLimiter, RedisStore},
};

/// What every request handler shares: one `Arc`, because axum clones the
/// state for each request (cloning the fields one by one cost several
/// atomic increments and decrements per request, measurable on the
/// cheapest endpoints). Fields are reached through `Deref`.
#[derive(Clone)]
pub struct PlatformState(Arc<Shared>);

impl std::ops::Deref for PlatformState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`PlatformState`].
pub struct Shared {
    pub db: PgPool,
    pub config: Arc<Config>,
    /// `None` when `RATE_LIMITS=off`.
    pub limiter: Option<RateLimiter>,
    /// Present when `REDIS_URL` is set; readiness checks it.
    pub redis: Option<redis::aio::ConnectionManager>,
    pub metrics: PrometheusHandle,
    /// Set when shutdown begins, so readiness fails and load balancers stop
    /// sending traffic while in-flight requests drain.
    draining: AtomicBool,
    /// Registered once by the identity module; shared by every clone.
    authenticator: OnceLock<SharedAuthenticator>,
}

impl PlatformState {
    /// Connects the optional stores named by the configuration.
    pub async fn build(config: Config, db: PgPool) -> anyhow::Result<Self> {
        let policy = PenaltyPolicy {
            strikes_to_block: config.rate_limit_block_after,
            ..PenaltyPolicy::default()
        };
        let redis = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.expose_secret())?;
                Some(
                    redis::aio::ConnectionManager::new(client)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot connect to Redis (REDIS_URL): {e}"))?,
                )
            }
            None => None,
        };
        let limiter = if config.rate_limits_enabled() {
            let store: Arc<dyn RateLimitStore> = match &redis {
                Some(conn) => Arc::new(RedisStore::new(conn.clone(), policy)),
                None => {
                    let memory = Arc::new(MemoryStore::new(policy));
                    spawn_sweeper(Arc::downgrade(&memory));
                    memory
                }
            };
            Some(RateLimiter::new(store, &config))
        } else {
            None
        };
        Ok(Self(Arc::new(Shared {
            db,
            config: Arc::new(config),
            limiter,
            redis,
            metrics: metrics::install(),
            draining: AtomicBool::new(false),
            authenticator: OnceLock::new(),
        })))
    }

    /// Installs the bearer-token verifier (once; later calls are ignored).
    pub fn set_authenticator(&self, authenticator: SharedAuthenticator) {
        let _ = self.authenticator.set(authenticator);
    }

    pub fn authenticator(&self) -> Option<&SharedAuthenticator> {
        self.authenticator.get()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Forgets idle in-process rate-limit state every minute, until the store
/// is dropped.
fn spawn_sweeper(store: std::sync::Weak<MemoryStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match store.upgrade() {
                Some(store) => store.sweep(),
                None => break,
            }
        }
    });
}
