//! Listings: what can be rented, where, when and at what price.
//!
//! - [`model`]: the shapes of a listing (pricing, packages, rules, policies),
//!   shared with the bookings module.
//! - [`terms`]: a listing as a booking sees it.
//! - [`inventory`]: claiming and releasing units of a listing for bookings
//!   (the exclusion constraint that makes double booking impossible).

pub mod inventory;
pub mod model;
pub mod terms;

use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

/// Every listings route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
}

/// The listings module's services, shared by its handlers through
/// `Extension<Listings>`.
#[derive(Clone)]
pub struct Listings {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    state: PlatformState,
}

impl Listings {
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
