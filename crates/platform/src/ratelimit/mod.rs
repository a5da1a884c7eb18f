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

pub use layer::{ClientIp, RateLimitSubject, client_ip, rate_limit};
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
    /// `POST /v1/auth/login`, per IP: slows credential stuffing.
    Login,
    /// `POST /v1/auth/register`, per IP.
    Register,
    /// Accounts created per IP per day: the sign-up velocity check, taken
    /// by the register handler only when an account is actually created.
    Signup,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Read => "read",
            Group::Write => "write",
            Group::Auth => "auth",
            Group::Login => "login",
            Group::Register => "register",
            Group::Signup => "signup",
        }
    }

    /// Which group a request belongs to; `None` for unlimited routes
    /// (health, metrics, docs).
    pub fn of(method: &http::Method, path: &str) -> Option<Group> {
        if !path.starts_with("/v1/") || path.starts_with("/v1/openapi.json") {
            return None;
        }
        if path == "/v1/auth/login" && method == http::Method::POST {
            Some(Group::Login)
        } else if path == "/v1/auth/register" && method == http::Method::POST {
            Some(Group::Register)
        } else if path.starts_with("/v1/auth/") {
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
    login: Quota,
    register: Quota,
    signup: Quota,
}

impl RateLimiter {
    pub fn new(store: Arc<dyn RateLimitStore>, config: &Config) -> Self {
        Self {
            store,
            read: config.rate_limit_read,
            write: config.rate_limit_write,
            auth: config.rate_limit_auth,
            login: config.rate_limit_login,
            register: config.rate_limit_register,
            signup: config.signup_velocity,
        }
    }

    pub fn quota(&self, group: Group) -> Quota {
        match group {
            Group::Read => self.read,
            Group::Write => self.write,
            Group::Auth => self.auth,
            Group::Login => self.login,
            Group::Register => self.register,
            Group::Signup => self.signup,
        }
    }

    pub async fn check(&self, group: Group, client: &str) -> anyhow::Result<Decision> {
        self.store.check(group, self.quota(group), client).await
    }
}
