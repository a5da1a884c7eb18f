//! Rate limiting: GCRA per client and route group, with escalating blocks
//! for clients that keep hammering after being limited.
//!
//! Two stores implement [`RateLimitStore`] with the same observable
//! behaviour: [`MemoryStore`] (in-process, `governor`) and [`RedisStore`]
//! (one Lua script, so limits hold across instances). The same test suite
//! runs against both. The HTTP side is [`layer::rate_limit`].

mod layer;
mod memory;
mod quota;
mod redis_store;

use std::{sync::Arc, time::Duration};

pub use layer::{RateLimitSubject, rate_limit};
pub use memory::MemoryStore;
pub use quota::Quota;
pub use redis_store::RedisStore;

use crate::config::Config;

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the client's allowance is whole again (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// When denied: how long to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Denied because the client is serving an escalated block.
    pub blocked: bool,
}

/// How repeat offenders are punished: after `strikes_to_block` denied
/// requests within `strike_window`, the client is blocked outright, for
/// longer each time within a day (1 min, 5 min, 15 min, 1 h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PenaltyPolicy {
    pub strikes_to_block: u32,
    pub strike_window: Duration,
    pub blocks: Vec<Duration>,
    /// How long a past block still counts towards the next, longer one.
    pub memory: Duration,
}

impl Default for PenaltyPolicy {
    fn default() -> Self {
        Self {
            strikes_to_block: 10,
            strike_window: Duration::from_secs(60),
            blocks: [60, 300, 900, 3600].map(Duration::from_secs).to_vec(),
            memory: Duration::from_secs(24 * 3600),
        }
    }
}

impl PenaltyPolicy {
    /// Block length for the `level`-th block (1-based), capped at the last.
    pub fn block_for(&self, level: u32) -> Duration {
        let index = (level.max(1) as usize - 1).min(self.blocks.len().saturating_sub(1));
        self.blocks
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }
}

/// A named set of routes sharing one quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Read,
    Write,
    Auth,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Read => "read",
            Group::Write => "write",
            Group::Auth => "auth",
        }
    }

    /// Which group a request belongs to; `None` for unlimited routes
    /// (health, metrics, docs).
    pub fn of(method: &http::Method, path: &str) -> Option<Group> {
        if !path.starts_with("/v1/") || path.starts_with("/v1/openapi.json") {
            return None;
        }
        if path.starts_with("/v1/auth/") {
            Some(Group::Auth)
        } else if method == http::Method::GET
            || method == http::Method::HEAD
            || method == http::Method::OPTIONS
        {
            Some(Group::Read)
        } else {
            Some(Group::Write)
        }
    }
}

/// A store that decides and remembers.
#[async_trait::async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    async fn check(&self, group: Group, quota: Quota, client: &str) -> anyhow::Result<Decision>;
}

/// The limiter the middleware holds: quotas per group plus a store.
#[derive(Clone)]
pub struct RateLimiter {
    store: Arc<dyn RateLimitStore>,
    read: Quota,
    write: Quota,
    auth: Quota,
}

impl RateLimiter {
    pub fn new(store: Arc<dyn RateLimitStore>, config: &Config) -> Self {
        Self {
            store,
            read: config.rate_limit_read,
            write: config.rate_limit_write,
            auth: config.rate_limit_auth,
        }
    }

    pub fn quota(&self, group: Group) -> Quota {
        match group {
            Group::Read => self.read,
            Group::Write => self.write,
            Group::Auth => self.auth,
        }
    }

    pub async fn check(&self, group: Group, client: &str) -> anyhow::Result<Decision> {
        self.store.check(group, self.quota(group), client).await
    }
}
