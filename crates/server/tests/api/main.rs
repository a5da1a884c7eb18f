//! HTTP-level tests of the running application against real PostgreSQL and
//! Redis. One test binary (faster to link); each test gets its own database.

mod oidc_provider;
mod support;
mod widgets;

mod bookings;
mod bookings_races;
mod bookings_reactions;
mod bookings_timers;
mod config_and_startup;
mod demo_seed;
mod envelope;
mod events_consumers;
mod events_jetstream;
mod health_and_metrics;
mod idempotency;
mod identity_access;
mod identity_kyc;
mod identity_mfa;
mod identity_privacy;
mod identity_sessions;
mod identity_tokens;
mod identity_verification;
mod jobs_and_outbox;
mod journey;
mod listings;
mod listings_availability;
mod listings_media;
mod listings_review;
mod middleware;
mod notifications;
mod oidc;
mod openapi;
mod pagination;
mod payments_bookings;
mod payments_invariants;
mod payments_ledger;
mod payments_reconcile;
mod payments_wallet;
mod rate_limits;
mod reviews;
mod search;
mod shutdown;
