//! Bookings: a renter's claim on a listing for a time, from request to
//! completion.
//!
//! - [`pricing`]: the price of a prospective booking, a pure function.
//! - [`refund`]: how much a cancellation gives back, a pure function of the
//!   listing's policy, the notice and what was paid.
//! - [`state`]: the state machine, a pure transition table.
//! - [`service`]: create, quote, transitions, extensions and expiry, one
//!   transaction each; [`handlers`]: the HTTP endpoints over it.
//! - [`payment`]: the payment saga (`pending_payment` until the card is
//!   authorized; the money of each transition follows as a payments task).
//! - [`jobs`]: the approval and payment timers.
//! - [`support`]: the support case a dispute opens (an event consumer).
//!
//! Double booking is impossible by construction: a booking holds its unit
//! through a `booked` availability window written in the same transaction
//! (see `rentify_listings::inventory`), and the exclusion constraint
//! `availability_no_overlap` refuses an overlapping one.

pub mod error;
pub mod handlers;
pub mod jobs;
pub mod model;
pub mod payment;
pub mod placement;
pub mod pricing;
pub mod refund;
pub mod service;
pub mod state;
pub mod support;

use rentify_listings::terms::BookingTerms;
use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

pub use jobs::BookingJobs;

/// Every bookings route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    handlers::routes().merge(support::routes())
}

/// The bookings module's event consumers.
pub fn consumers() -> Vec<rentify_events::Consumer> {
    vec![support::consumer()]
}

/// The bookings module's services, shared by its handlers through
/// `Extension<Bookings>`.
#[derive(Clone)]
pub struct Bookings {
    inner: std::sync::Arc<Inner>,
}

pub(crate) struct Inner {
    state: PlatformState,
    jobs: BookingJobs,
    payments: rentify_payments::Payments,
    /// Listing terms by listing id. Safe to serve stale: a placement made
    /// with terms of an older listing version is refused (`stale`), and the
    /// caller reloads them.
    terms: std::sync::RwLock<std::collections::HashMap<uuid::Uuid, std::sync::Arc<BookingTerms>>>,
}

/// Entries kept in the terms cache before it is emptied (a crude bound; the
/// cache only saves one query per booking attempt).
const TERMS_CACHE_MAX: usize = 10_000;

impl Bookings {
    /// Builds the module on `payments` and registers its side of the
    /// booking payment saga there.
    pub async fn init(
        state: &PlatformState,
        payments: rentify_payments::Payments,
    ) -> anyhow::Result<Self> {
        let jobs = BookingJobs::build(state.db.clone(), payments.jobs().clone()).await?;
        let bookings = Self {
            inner: std::sync::Arc::new(Inner {
                state: state.clone(),
                jobs,
                payments,
                terms: Default::default(),
            }),
        };
        bookings.payments().set_booking_saga(bookings.saga());
        Ok(bookings)
    }

    /// The payments module (the booking's money).
    pub fn payments(&self) -> &rentify_payments::Payments {
        &self.inner.payments
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub fn db(&self) -> &sqlx::PgPool {
        &self.inner.state.db
    }

    /// The jobs, to enqueue them in a business transaction.
    pub fn jobs(&self) -> &BookingJobs {
        &self.inner.jobs
    }

    /// The booking terms of `listing_id`, from the cache unless `fresh`;
    /// `None` for an unknown listing.
    pub async fn terms(
        &self,
        conn: &mut sqlx::PgConnection,
        listing_id: uuid::Uuid,
        fresh: bool,
    ) -> anyhow::Result<Option<std::sync::Arc<BookingTerms>>> {
        if !fresh {
            let cached = self
                .inner
                .terms
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&listing_id)
                .cloned();
            if cached.is_some() {
                return Ok(cached);
            }
        }
        let Some(terms) = rentify_listings::terms::booking_terms(conn, listing_id, false).await?
        else {
            return Ok(None);
        };
        let terms = std::sync::Arc::new(terms);
        let mut cache = self.inner.terms.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= TERMS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(listing_id, terms.clone());
        Ok(Some(terms))
    }

    /// `BOOKING_APPROVAL_WINDOW_SECS`: how long a request holds its slot.
    pub fn approval_window(&self) -> chrono::Duration {
        chrono::Duration::seconds(
            i64::try_from(self.inner.state.config.booking_approval_window_secs)
                .unwrap_or(i64::MAX / 1_000),
        )
    }
}
