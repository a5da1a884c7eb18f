use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

use super::{Decision, Group, PenaltyPolicy, Quota, RateLimitStore};

/// Limits shared by every instance through Redis. One Lua script does the
/// whole decision (block check, GCRA, strike counting, escalation) on the
/// server's clock, so it is atomic and needs one round trip.
pub struct RedisStore {
    conn: ConnectionManager,
    script: Script,
    policy: PenaltyPolicy,
    prefix: String,
}

const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local strikes_to_block = tonumber(ARGV[3])
local strike_window = tonumber(ARGV[4])
local memory = tonumber(ARGV[5])
local period = interval * limit

local blocked = redis.call('PTTL', KEYS[4])
if blocked > 0 then
  return {0, 0, blocked, blocked, 1}
end

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  local strikes = redis.call('INCR', KEYS[2])
  if strikes == 1 then redis.call('PEXPIRE', KEYS[2], strike_window) end
  if strikes >= strikes_to_block then
    local level = redis.call('INCR', KEYS[3])
    redis.call('PEXPIRE', KEYS[3], memory)
    local index = math.min(level, #ARGV - 5)
    local block = tonumber(ARGV[5 + index])
    redis.call('SET', KEYS[4], '1', 'PX', block)
    redis.call('DEL', KEYS[2])
    return {0, 0, block, block, 1}
  end
  return {0, 0, tat - now, allow_at - now, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
local remaining = math.floor((period - (new_tat - now)) / interval)
return {1, remaining, new_tat - now, 0, 0}
"#;

impl RedisStore {
    /// Uses `conn` (a reconnecting handle, cheap to clone) for every check.
    pub fn new(conn: ConnectionManager, policy: PenaltyPolicy) -> Self {
        Self {
            conn,
            script: Script::new(SCRIPT),
            policy,
            prefix: "rentify:rl".into(),
        }
    }
}

#[async_trait::async_trait]
impl RateLimitStore for RedisStore {
    async fn check(&self, group: Group, quota: Quota, client: &str) -> anyhow::Result<Decision> {
        // One hash tag per client and group so a cluster keeps the keys together.
        let base = format!("{}:{{{}:{client}}}", self.prefix, group.name());
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!(
                "{base}:tat:{}:{}",
                quota.limit,
                quota.period.as_millis()
            ))
            .key(format!("{base}:strikes"))
            .key(format!("{base}:level"))
            .key(format!("{base}:block"))
            .arg(quota.interval().as_millis().max(1) as u64)
            .arg(quota.limit)
            .arg(self.policy.strikes_to_block)
            .arg(self.policy.strike_window.as_millis() as u64)
            .arg(self.policy.memory.as_millis() as u64);
        for block in &self.policy.blocks {
            invocation.arg(block.as_millis() as u64);
        }
        let mut conn = self.conn.clone();
        let (allowed, remaining, reset_ms, retry_ms, blocked): (i64, i64, i64, i64, i64) =
            invocation.invoke_async(&mut conn).await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.limit,
            remaining: remaining.max(0) as u32,
            reset_after: Duration::from_millis(reset_ms.max(0) as u64),
            retry_after: (allowed == 0).then(|| Duration::from_millis(retry_ms.max(0) as u64)),
            blocked: blocked == 1,
        })
    }
}
