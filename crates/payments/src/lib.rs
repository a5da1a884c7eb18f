//! Payments: how money moves, and only through the ledger.
//!
//! - [`ledger`]: double-entry accounts and transfers, enforced by the
//!   database (balanced, append-only, no wallet below zero, two-phase).
//! - [`gateway`]: the card processor as a trait; [`sandbox`]: a built-in
//!   processor that behaves like a real one (tokens, intents, signed and
//!   unreliable webhooks, injectable failures); [`breaker`]: the timeout and
//!   circuit breaker every call goes through.
//! - [`methods`]: cards (by token) and payout accounts.
//! - [`intents`]: a payment's life at the gateway (authorize, capture, void,
//!   refund) mirrored in the ledger, applied once whether the answer comes
//!   from the call or from a webhook ([`webhooks`]).
//! - [`escrow`]: a booking's money — line items, holds, capture, refunds,
//!   settlement to the owner and the platform, disputes.
//! - [`payouts`]: owners' earnings to their bank, daily.
//! - [`wallet`]: wallets, deposits, withdrawals and their fraud checks.
//! - [`reconcile`]: the daily proof that the books are right.

pub mod breaker;
pub mod demo;
pub mod error;
pub mod escrow;
pub mod gateway;
pub mod handlers;
pub mod intents;
pub mod jobs;
pub mod ledger;
pub mod methods;
pub mod payouts;
pub mod reconcile;
pub mod sandbox;
pub mod wallet;
pub mod webhooks;

use std::sync::{Arc, OnceLock};

use rentify_platform::PlatformState;
use secrecy::ExposeSecret;
use utoipa_axum::router::OpenApiRouter;

pub use error::{PaymentError, PaymentResult};
pub use jobs::PaymentJobs;

/// The webhook secret used in development when `PAYMENTS_WEBHOOK_SECRET`
/// is unset.
pub const DEV_WEBHOOK_SECRET: &str = "whsec_dev_payments";

/// Every payments route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    handlers::routes()
}

/// What the bookings module does when a booking's authorization is decided
/// (by the call's answer, a webhook or the payment timer). Payments cannot
/// depend on bookings (bookings uses payments), so bookings registers
/// itself here at start-up.
#[async_trait::async_trait]
pub trait BookingSaga: Send + Sync + 'static {
    /// The gateway answered the authorization of `intent_id` (a booking's):
    /// `Ok` authorized, `Err((code, message))` declined, with the gateway's
    /// id of the intent when the answer carries it. Idempotent.
    async fn authorization_decided(
        &self,
        intent_id: uuid::Uuid,
        outcome: Result<(), (String, String)>,
        provider_intent_id: Option<&str>,
    ) -> anyhow::Result<()>;
}

/// The payments module's services, shared by its handlers through
/// `Extension<Payments>`.
#[derive(Clone)]
pub struct Payments {
    inner: Arc<Inner>,
}

struct Inner {
    state: PlatformState,
    gateway: Arc<breaker::Guarded>,
    sandbox: Option<Arc<sandbox::Sandbox>>,
    accounts: ledger::Accounts,
    saga: OnceLock<Arc<dyn BookingSaga>>,
    jobs: PaymentJobs,
    webhook_secret: Vec<u8>,
}

impl Payments {
    /// Builds the module with the built-in sandbox gateway (the only
    /// gateway so far; a real adapter plugs in through [`Payments::with_gateway`]).
    pub async fn init(state: &PlatformState) -> anyhow::Result<Self> {
        let config = &state.config;
        let secret = webhook_secret(state);
        let sandbox = sandbox::Sandbox::new(
            state.db.clone(),
            secret.clone(),
            sandbox::SandboxConfig {
                duplicate_percent: config.sandbox_webhook_duplicate_percent,
                max_delay_ms: config.sandbox_webhook_max_delay_ms,
                failure_percent: config.sandbox_failure_percent,
                timeout_percent: config.sandbox_timeout_percent,
            },
        );
        let url = config
            .payments_webhook_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/v1/webhooks/payments", config.port));
        sandbox.set_webhook_url(url);
        let gateway: Arc<dyn gateway::PaymentGateway> = sandbox.clone();
        Self::with_gateway(state, gateway, Some(sandbox)).await
    }

    /// Builds the module on `gateway`.
    pub async fn with_gateway(
        state: &PlatformState,
        gateway: Arc<dyn gateway::PaymentGateway>,
        sandbox: Option<Arc<sandbox::Sandbox>>,
    ) -> anyhow::Result<Self> {
        let config = &state.config;
        let guarded = Arc::new(breaker::Guarded::new(
            gateway,
            breaker::BreakerConfig {
                call_timeout: std::time::Duration::from_millis(config.payments_gateway_timeout_ms),
                failure_threshold: config.payments_breaker_threshold,
                open_for: std::time::Duration::from_secs(config.payments_breaker_open_secs),
            },
        ));
        let jobs = PaymentJobs::build(state.db.clone()).await?;
        let job_state = jobs.state.clone();
        let payments = Self {
            inner: Arc::new(Inner {
                state: state.clone(),
                gateway: guarded,
                sandbox,
                accounts: ledger::Accounts::new(state.db.clone()),
                saga: OnceLock::new(),
                jobs,
                webhook_secret: webhook_secret(state),
            }),
        };
        job_state.set(&payments.inner);
        Ok(payments)
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.inner.state.db
    }

    /// The gateway, behind its timeout and circuit breaker.
    pub fn gateway(&self) -> &breaker::Guarded {
        &self.inner.gateway
    }

    /// The sandbox gateway, for tests and the demo (its fault injection).
    pub fn sandbox(&self) -> Option<&Arc<sandbox::Sandbox>> {
        self.inner.sandbox.as_ref()
    }

    pub fn accounts(&self) -> &ledger::Accounts {
        &self.inner.accounts
    }

    /// The jobs, to enqueue them in a business transaction.
    pub fn jobs(&self) -> &PaymentJobs {
        &self.inner.jobs
    }

    /// The module's jobs on `pool` (a worker's own pool, so running jobs
    /// never starve the API's connections), bound to this module.
    pub async fn jobs_on(&self, pool: sqlx::PgPool) -> anyhow::Result<PaymentJobs> {
        let jobs = PaymentJobs::build(pool).await?;
        jobs.state.set(&self.inner);
        Ok(jobs)
    }

    pub(crate) fn webhook_secret(&self) -> &[u8] {
        &self.inner.webhook_secret
    }

    /// Registers the bookings module's reaction to authorizations.
    pub fn set_booking_saga(&self, saga: Arc<dyn BookingSaga>) {
        let _ = self.inner.saga.set(saga);
    }

    pub(crate) fn booking_saga(&self) -> anyhow::Result<&Arc<dyn BookingSaga>> {
        self.inner
            .saga
            .get()
            .ok_or_else(|| anyhow::anyhow!("the bookings module did not register its payment saga"))
    }

    /// Refuses at once while the gateway's circuit is open, before a saga
    /// starts anything it would have to undo.
    pub fn ensure_gateway_available(&self) -> PaymentResult<()> {
        if self.inner.gateway.is_open() {
            Err(PaymentError::ProviderUnavailable)
        } else {
            Ok(())
        }
    }

    /// `PAYMENTS_OWNER_COMMISSION_BPS`.
    pub fn commission_bps(&self) -> i64 {
        i64::from(self.inner.state.config.payments_owner_commission_bps)
    }
}

fn webhook_secret(state: &PlatformState) -> Vec<u8> {
    state
        .config
        .payments_webhook_secret
        .as_ref()
        .map(|s| s.expose_secret().as_bytes().to_vec())
        .unwrap_or_else(|| DEV_WEBHOOK_SECRET.as_bytes().to_vec())
}
