//! Reviews and trust: what the parties of a booking say about each other,
//! and how much the marketplace vouches for each user.
//!
//! - [`rules`]: who may review whom and when, what is public, what can be
//!   edited (pure);
//! - [`moderation`]: the spam, profanity and contact-sharing checks every
//!   review passes (pure);
//! - [`service`]: writing, editing, moderating and revealing reviews, one
//!   transaction each with its outbox event; [`handlers`] and [`admin`]:
//!   the HTTP endpoints over it;
//! - [`jobs`]: the review-window timer that reveals a lone review;
//! - [`ratings`]: the `review_ratings` consumer keeping
//!   `users.rating_summary`;
//! - [`trust`]: the trust score (pure, property-tested); [`signals`]: the
//!   `trust` consumer that gathers its inputs and stores it;
//! - [`accounts`]: the identity columns this module reads and keeps.
//!
//! Reviews are double-blind: a review is sealed (seen by its author only)
//! until both parties have reviewed the booking or the window closes, so
//! neither can answer the other's review with their own.

pub mod accounts;
pub mod admin;
pub mod error;
pub mod handlers;
pub mod jobs;
pub mod model;
pub mod moderation;
pub mod ratings;
pub mod rules;
pub mod service;
pub mod signals;
pub mod trust;

use std::sync::Arc;

use rentify_events::Consumer;
use rentify_platform::PlatformState;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use jobs::ReviewJobs;

/// Every reviews route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(
            handlers::create_review,
            handlers::list_booking_reviews
        ))
        .routes(routes!(handlers::get_review, handlers::update_review))
        .routes(routes!(handlers::list_user_reviews))
        .routes(routes!(admin::list_reviews_for_moderation))
        .routes(routes!(admin::approve_review))
        .routes(routes!(admin::reject_review))
        .routes(routes!(admin::get_user_trust))
}

/// The module's event consumers: the rating aggregate and the trust score.
pub fn consumers() -> Vec<Consumer> {
    vec![ratings::consumer(), signals::consumer()]
}

/// The reviews module's services, shared by its handlers through
/// `Extension<Reviews>`.
#[derive(Clone)]
pub struct Reviews {
    inner: Arc<Inner>,
}

struct Inner {
    state: PlatformState,
    /// On the API's pool: to enqueue the window timer in a review's
    /// transaction.
    jobs: ReviewJobs,
}

impl Reviews {
    pub async fn init(state: &PlatformState) -> anyhow::Result<Self> {
        let jobs = ReviewJobs::build(state.db.clone()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                state: state.clone(),
                jobs,
            }),
        })
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.inner.state.db
    }

    pub fn jobs(&self) -> &ReviewJobs {
        &self.inner.jobs
    }

    /// `REVIEWS_WINDOW_SECS`: how long after completion a booking can be
    /// reviewed, and how long a lone review stays sealed.
    pub fn window(&self) -> chrono::Duration {
        chrono::Duration::seconds(
            i64::try_from(self.inner.state.config.reviews_window_secs).unwrap_or(i64::MAX / 1_000),
        )
    }
}
