//! Listings: what can be rented, where, when and at what price.
//!
//! - [`model`]: the shapes of a listing (pricing, packages, rules, policies),
//!   shared with the bookings module.
//! - [`terms`]: a listing as a booking sees it.
//! - [`categories`]: the seeded category tree.
//! - [`listing`]: listings themselves — fields and rules, the state machine,
//!   storage, ETags, and the `/v1/listings` routes; [`review`]: admin review.
//! - [`availability`]: the owner's available/blocked windows per unit.
//! - [`error`]: this module's errors and codes.
//! - [`inventory`]: claiming and releasing units of a listing for bookings
//!   (the exclusion constraint that makes double booking impossible).
//! - [`media`]: photo and video uploads (signed or presigned URLs), their
//!   order on the listing, and thumbnails.

pub mod availability;
pub mod categories;
pub mod demo;
pub mod error;
pub mod inventory;
pub mod listing;
pub mod media;
pub mod model;
pub mod review;
pub mod terms;

use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

/// Every listings route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .merge(media::routes())
        .merge(categories::routes())
        .merge(listing::handlers::routes())
        .merge(review::routes())
        .merge(availability::routes())
}

/// The listings module's services, shared by its handlers through
/// `Extension<Listings>`.
#[derive(Clone)]
pub struct Listings {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    state: PlatformState,
    media: media::Media,
}

impl Listings {
    pub async fn init(state: &PlatformState) -> anyhow::Result<Self> {
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                state: state.clone(),
                media: media::Media::init(&state.config, state.db.clone()).await?,
            }),
        })
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.inner.state.db
    }

    /// The media store, upload limits and thumbnail job.
    pub fn media(&self) -> &media::Media {
        &self.inner.media
    }
}
