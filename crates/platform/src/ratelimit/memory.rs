use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{
    RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use super::{Decision, Group, PenaltyPolicy, Quota, RateLimitStore};

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// In-process limits: `governor`'s keyed GCRA per (group, quota), plus the
/// penalty box. Limits are per process; set `REDIS_URL` to share them.
pub struct MemoryStore {
    limiters: Mutex<HashMap<(Group, Quota), std::sync::Arc<Keyed>>>,
    offenders: Mutex<HashMap<String, Offender>>,
    policy: PenaltyPolicy,
    clock: DefaultClock,
}

#[derive(Debug, Default)]
struct Offender {
    strikes: u32,
    window_started: Option<Instant>,
    level: u32,
    last_block: Option<Instant>,
    blocked_until: Option<Instant>,
}

impl MemoryStore {
    pub fn new(policy: PenaltyPolicy) -> Self {
        Self {
            limiters: Mutex::new(HashMap::new()),
            offenders: Mutex::new(HashMap::new()),
            policy,
            clock: DefaultClock::default(),
        }
    }

    fn limiter(&self, group: Group, quota: Quota) -> std::sync::Arc<Keyed> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters
            .entry((group, quota))
            .or_insert_with(|| {
                let burst = NonZeroU32::new(quota.limit).unwrap_or(NonZeroU32::MIN);
                let gq =
                    governor::Quota::with_period(quota.interval().max(Duration::from_nanos(1)))
                        .expect("a non-zero interval")
                        .allow_burst(burst);
                std::sync::Arc::new(
                    RateLimiter::keyed(gq).with_middleware::<StateInformationMiddleware>(),
                )
            })
            .clone()
    }

    /// Forgets idle clients; called by the server every minute.
    pub fn sweep(&self) {
        for limiter in self
            .limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            limiter.retain_recent();
        }
        let now = Instant::now();
        let memory = self.policy.memory;
        self.offenders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, o| {
                o.blocked_until.is_some_and(|until| until > now)
                    || o.last_block.is_some_and(|at| now - at < memory)
            });
    }
}

#[async_trait::async_trait]
impl RateLimitStore for MemoryStore {
    async fn check(&self, group: Group, quota: Quota, client: &str) -> anyhow::Result<Decision> {
        let key = format!("{}:{client}", group.name());
        let now = Instant::now();
        {
            let offenders = self.offenders.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = offenders
                .get(&key)
                .and_then(|o| o.blocked_until)
                .filter(|until| *until > now)
            {
                let wait = until - now;
                return Ok(Decision {
                    allowed: false,
                    limit: quota.limit,
                    remaining: 0,
                    reset_after: wait,
                    retry_after: Some(wait),
                    blocked: true,
                });
            }
        }
        match self.limiter(group, quota).check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset_after = quota.interval() * (quota.limit - remaining.min(quota.limit));
                Ok(Decision {
                    allowed: true,
                    limit: quota.limit,
                    remaining,
                    reset_after,
                    retry_after: None,
                    blocked: false,
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut offenders = self.offenders.lock().unwrap_or_else(|e| e.into_inner());
                let offender = offenders.entry(key).or_default();
                if offender
                    .window_started
                    .is_none_or(|start| now - start > self.policy.strike_window)
                {
                    offender.window_started = Some(now);
                    offender.strikes = 0;
                }
                if offender
                    .last_block
                    .is_some_and(|at| now - at > self.policy.memory)
                {
                    offender.level = 0;
                }
                offender.strikes += 1;
                if offender.strikes >= self.policy.strikes_to_block {
                    offender.level += 1;
                    offender.strikes = 0;
                    offender.window_started = None;
                    let block = self.policy.block_for(offender.level);
                    offender.blocked_until = Some(now + block);
                    offender.last_block = Some(now);
                    return Ok(Decision {
                        allowed: false,
                        limit: quota.limit,
                        remaining: 0,
                        reset_after: block,
                        retry_after: Some(block),
                        blocked: true,
                    });
                }
                let reset_after = quota.interval() * quota.limit;
                Ok(Decision {
                    allowed: false,
                    limit: quota.limit,
                    remaining: 0,
                    reset_after: reset_after.max(wait),
                    retry_after: Some(wait),
                    blocked: false,
                })
            }
        }
    }
}
