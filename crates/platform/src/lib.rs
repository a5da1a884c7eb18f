//! Cross-cutting foundations shared by every Rentify module.
//!
//! Modules never re-implement these pieces: they take configuration from
//! [`config::Config`], answer errors through [`error::ApiError`], parse input
//! with the extractors in [`extract`], paginate with [`pagination`], make
//! state-changing POSTs retry-safe with [`idempotency`], record domain events
//! with [`outbox`] and schedule durable work with [`jobs`] — the last two
//! inside the caller's own transaction.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod money;
pub mod outbox;
pub mod pagination;
pub mod patch;
pub mod ratelimit;
pub mod state;
pub mod telemetry;
pub mod webhook_signature;

pub use error::{ApiError, ApiResult};
pub use state::PlatformState;
