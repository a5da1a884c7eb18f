//! Bookings: a renter's claim on a listing for a time, from request to
//! completion.
//!
//! - [`pricing`]: the price of a prospective booking, a pure function.
//! - [`refund`]: how much a cancellation gives back, a pure function of the
//!   listing's policy, the notice and what was paid.

pub mod pricing;
pub mod refund;

use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

/// Every bookings route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
}

/// The bookings module's services, shared by its handlers through
/// `Extension<Bookings>`.
#[derive(Clone)]
pub struct Bookings {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    state: PlatformState,
}

impl Bookings {
    pub async fn init(state: &PlatformState) -> anyhow::Result<Self> {
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                state: state.clone(),
            }),
        })
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.inner.state.db
    }
}
