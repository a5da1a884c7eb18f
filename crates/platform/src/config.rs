//! Configuration, read once from the environment (12-factor) into one typed
//! struct and validated before anything starts.
//!
//! Every variable is documented on its field; `.env.example` and the README's
//! configuration table mirror this file. Secrets are wrapped in
//! [`secrecy::SecretString`] so they never reach a log line or a `Debug` dump.

use std::{net::IpAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ratelimit::Quota;

/// The whole service configuration.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// `HOST`: interface the HTTP server binds to.
    #[serde(default = "defaults::host")]
    pub host: IpAddr,
    /// `PORT`: TCP port of the HTTP server.
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// `PUBLIC_BASE_URL`: the URL clients use to reach the API (links, docs).
    #[serde(default = "defaults::public_base_url")]
    pub public_base_url: String,
    /// `DATABASE_URL`: PostgreSQL connection string (required store). It can
    /// carry a password, so it is a secret.
    #[serde(default = "defaults::database_url")]
    pub database_url: SecretString,
    /// `DATABASE_MAX_CONNECTIONS`: pool size per process.
    #[serde(default = "defaults::database_max_connections")]
    pub database_max_connections: u32,
    /// `REDIS_URL`: when set, rate limits (and later presence and fan-out)
    /// live in Redis so they hold across instances; otherwise in-process.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub redis_url: Option<SecretString>,
    /// `NATS_URL`: when set, outbox events are relayed to NATS JetStream.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub nats_url: Option<SecretString>,
    /// `NATS_STREAM`: the JetStream stream holding the domain events.
    #[serde(default = "defaults::nats_stream")]
    pub nats_stream: String,
    /// `NATS_SUBJECT_PREFIX`: events are published on `<prefix>.<type>`.
    #[serde(default = "defaults::nats_subject_prefix")]
    pub nats_subject_prefix: String,
    /// `LOG_FORMAT`: `json` (default, for machines) or `pretty` (for people).
    #[serde(default)]
    pub log_format: LogFormat,
    /// `REQUEST_TIMEOUT_SECS`: requests running longer are abandoned with 504.
    #[serde(default = "defaults::request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// `SHUTDOWN_GRACE_SECS`: how long SIGTERM waits for in-flight work.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins allowed cross-origin
    /// access; empty allows none.
    #[serde(default, deserialize_with = "comma_list")]
    pub cors_allowed_origins: Vec<String>,
    /// `TRUST_PROXY_HEADERS`: take the client IP from `X-Forwarded-For`
    /// (only behind a proxy that sets it).
    #[serde(default)]
    pub trust_proxy_headers: bool,
    /// `RATE_LIMITS`: `on` (default) or `off` (benchmarks and load tests).
    #[serde(default)]
    pub rate_limits: Switch,
    /// `RATE_LIMIT_READ`: quota for GET/HEAD under `/v1`, e.g. `600/min`.
    #[serde(
        default = "defaults::rate_limit_read",
        deserialize_with = "quota_vars::read"
    )]
    pub rate_limit_read: Quota,
    /// `RATE_LIMIT_WRITE`: quota for other methods under `/v1`.
    #[serde(
        default = "defaults::rate_limit_write",
        deserialize_with = "quota_vars::write"
    )]
    pub rate_limit_write: Quota,
    /// `RATE_LIMIT_AUTH`: quota for `/v1/auth/*` (credential stuffing).
    #[serde(
        default = "defaults::rate_limit_auth",
        deserialize_with = "quota_vars::auth"
    )]
    pub rate_limit_auth: Quota,
    /// `RATE_LIMIT_LOGIN`: quota for `POST /v1/auth/login` per IP.
    #[serde(
        default = "defaults::rate_limit_login",
        deserialize_with = "quota_vars::login"
    )]
    pub rate_limit_login: Quota,
    /// `RATE_LIMIT_REGISTER`: quota for `POST /v1/auth/register` per IP.
    #[serde(
        default = "defaults::rate_limit_register",
        deserialize_with = "quota_vars::register"
    )]
    pub rate_limit_register: Quota,
    /// `SIGNUP_VELOCITY`: accounts one IP may create, e.g. `20/day`.
    #[serde(
        default = "defaults::signup_velocity",
        deserialize_with = "quota_vars::signup"
    )]
    pub signup_velocity: Quota,
    /// `RATE_LIMIT_BLOCK_AFTER`: denied requests within a minute after which
    /// a client is blocked outright, for 1 min, then 5, 15 and 60 min.
    #[serde(default = "defaults::rate_limit_block_after")]
    pub rate_limit_block_after: u32,
    /// `IDEMPOTENCY_TTL_HOURS`: how long an `Idempotency-Key` is remembered.
    #[serde(default = "defaults::idempotency_ttl_hours")]
    pub idempotency_ttl_hours: u32,
    /// `WORKER_CONCURRENCY`: job workers per queue in `worker`/`all`.
    #[serde(default = "defaults::worker_concurrency")]
    pub worker_concurrency: usize,
    /// `JOB_POLL_INTERVAL_MS`: how often workers look for delayed tasks and
    /// retries that became due (new tasks wake them at once).
    #[serde(default = "defaults::job_poll_interval_ms")]
    pub job_poll_interval_ms: u64,
    /// `APP_ENV`: `development` (default) or `production`. Production refuses
    /// to start with the built-in development keys below.
    #[serde(default)]
    pub app_env: AppEnv,
    /// `JWT_ISSUER`: `iss` of access tokens; defaults to `PUBLIC_BASE_URL`.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub jwt_issuer: Option<String>,
    /// `JWT_AUDIENCE`: `aud` of access tokens.
    #[serde(default = "defaults::jwt_audience")]
    pub jwt_audience: String,
    /// `ACCESS_TOKEN_TTL_SECS`: lifetime of a JWT access token.
    #[serde(default = "defaults::access_token_ttl_secs")]
    pub access_token_ttl_secs: u64,
    /// `REFRESH_TOKEN_TTL_DAYS`: lifetime of a refresh token (and its family).
    #[serde(default = "defaults::refresh_token_ttl_days")]
    pub refresh_token_ttl_days: u32,
    /// `PII_ENCRYPTION_KEYS`: AES-256-GCM keys for personal data at rest,
    /// `<version>:<base64 of 32 bytes>` separated by commas; the first
    /// encrypts, all decrypt (rotation). Required in production.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub pii_encryption_keys: Option<SecretString>,
    /// `BLIND_INDEX_KEY`: base64 of 32 bytes; HMAC key of the lookup index
    /// over encrypted fields (phone). Required in production.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub blind_index_key: Option<SecretString>,
    /// `KYC_WEBHOOK_SECRET`: shared secret of the KYC provider's signed
    /// webhooks. Required in production.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub kyc_webhook_secret: Option<SecretString>,
    /// `LOCKOUT_THRESHOLD`: failed logins within `LOCKOUT_WINDOW_MINS` that
    /// lock an account (for 1 min, then longer each time).
    #[serde(default = "defaults::lockout_threshold")]
    pub lockout_threshold: u32,
    /// `LOCKOUT_WINDOW_MINS`: the window failed logins are counted in.
    #[serde(default = "defaults::lockout_window_mins")]
    pub lockout_window_mins: u32,
    /// `OIDC_ISSUER_URL`: an OpenID Connect provider users may sign in
    /// with (discovery at `<issuer>/.well-known/openid-configuration`).
    /// Unset disables external sign-in.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub oidc_issuer_url: Option<String>,
    /// `OIDC_CLIENT_ID`: Rentify's client id at that provider.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub oidc_client_id: Option<String>,
    /// `OIDC_CLIENT_SECRET`: Rentify's client secret at that provider.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub oidc_client_secret: Option<SecretString>,
    /// `OIDC_REDIRECT_URL`: the callback registered at the provider;
    /// defaults to `<PUBLIC_BASE_URL>/v1/auth/oidc/callback`.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub oidc_redirect_url: Option<String>,
    /// `MEDIA_DIR`: directory of the local object store for listing media
    /// (used unless `MEDIA_S3_BUCKET` is set).
    #[serde(default = "defaults::media_dir")]
    pub media_dir: String,
    /// `MEDIA_S3_BUCKET`: keep media in this S3-compatible bucket instead;
    /// credentials, region and endpoint come from the standard `AWS_*`
    /// variables (`AWS_ENDPOINT` for MinIO and the like).
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub media_s3_bucket: Option<String>,
    /// `MEDIA_MAX_UPLOAD_BYTES`: largest media file accepted.
    #[serde(default = "defaults::media_max_upload_bytes")]
    pub media_max_upload_bytes: u64,
    /// `MEDIA_UPLOAD_URL_TTL_SECS`: how long a signed upload URL is valid.
    #[serde(default = "defaults::media_upload_url_ttl_secs")]
    pub media_upload_url_ttl_secs: u64,
    /// `MEDIA_SIGNING_KEY`: HMAC key of the local store's signed upload
    /// URLs. Required in production.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub media_signing_key: Option<SecretString>,
    /// `BOOKING_APPROVAL_WINDOW_SECS`: how long a booking request waits for
    /// the owner (and holds its slot) before it is declined automatically.
    #[serde(default = "defaults::booking_approval_window_secs")]
    pub booking_approval_window_secs: u64,
    /// `PAYMENTS_WEBHOOK_SECRET`: shared secret of the payment gateway's
    /// signed webhooks (`POST /v1/webhooks/payments`). Required in
    /// production; development uses `whsec_dev_payments`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub payments_webhook_secret: Option<SecretString>,
    /// `PAYMENTS_WEBHOOK_URL`: where the sandbox gateway delivers its
    /// webhooks; default this server's own `/v1/webhooks/payments`.
    #[serde(default, deserialize_with = "empty_string_as_none")]
    pub payments_webhook_url: Option<String>,
    /// `PAYMENTS_GATEWAY_TIMEOUT_MS`: a gateway call taking longer is
    /// abandoned (its outcome then arrives by webhook).
    #[serde(default = "defaults::payments_gateway_timeout_ms")]
    pub payments_gateway_timeout_ms: u64,
    /// `PAYMENTS_BREAKER_THRESHOLD`: consecutive gateway failures that open
    /// the circuit (calls then fail fast with 503).
    #[serde(default = "defaults::payments_breaker_threshold")]
    pub payments_breaker_threshold: u32,
    /// `PAYMENTS_BREAKER_OPEN_SECS`: how long an open circuit waits before
    /// trying the gateway again.
    #[serde(default = "defaults::payments_breaker_open_secs")]
    pub payments_breaker_open_secs: u64,
    /// `PAYMENTS_HOLD_TIMEOUT_SECS`: how long a booking awaiting its payment
    /// holds its unit before it is cancelled (`payment_timeout`).
    #[serde(default = "defaults::payments_hold_timeout_secs")]
    pub payments_hold_timeout_secs: u64,
    /// `PAYMENTS_OWNER_COMMISSION_BPS`: the platform's commission on an
    /// owner's earnings (rental and delivery), in basis points.
    #[serde(default = "defaults::payments_owner_commission_bps")]
    pub payments_owner_commission_bps: u32,
    /// `SANDBOX_WEBHOOK_DUPLICATE_PERCENT`, `SANDBOX_WEBHOOK_MAX_DELAY_MS`,
    /// `SANDBOX_FAILURE_PERCENT`, `SANDBOX_TIMEOUT_PERCENT`: the sandbox
    /// gateway's chaos (duplicate and late webhooks, 5xx, lost answers).
    #[serde(default)]
    pub sandbox_webhook_duplicate_percent: u8,
    #[serde(default)]
    pub sandbox_webhook_max_delay_ms: u64,
    #[serde(default)]
    pub sandbox_failure_percent: u8,
    #[serde(default)]
    pub sandbox_timeout_percent: u8,
    /// `FRAUD_MAX_TRANSACTIONS_PER_HOUR`: more wallet transactions than this
    /// in an hour send a withdrawal to review.
    #[serde(default = "defaults::fraud_max_transactions_per_hour")]
    pub fraud_max_transactions_per_hour: u32,
    /// `FRAUD_AMOUNT_FACTOR`: a withdrawal larger than this many times the
    /// user's largest earlier transaction goes to review.
    #[serde(default = "defaults::fraud_amount_factor")]
    pub fraud_amount_factor: u32,
    /// `FRAUD_DEPOSIT_WITHDRAW_WINDOW_SECS`: a withdrawal this soon after a
    /// deposit goes to review.
    #[serde(default = "defaults::fraud_deposit_withdraw_window_secs")]
    pub fraud_deposit_withdraw_window_secs: u64,
    /// `EVENTS_BATCH_SIZE`: outbox events a consumer handles per transaction.
    #[serde(default = "defaults::events_batch_size")]
    pub events_batch_size: u32,
    /// `EVENTS_POLL_MS`: how often an idle consumer looks for new events; it
    /// bounds the lag of a quiet stream.
    #[serde(default = "defaults::events_poll_ms")]
    pub events_poll_ms: u64,
    /// `SEARCH_REFRESH_MS`: how often an API process's search replica reads
    /// new events and makes them searchable; it bounds the index lag.
    #[serde(default = "defaults::search_refresh_ms")]
    pub search_refresh_ms: u64,
    /// `EVENTS_MAX_ATTEMPTS`: attempts of a failing event before it becomes
    /// a dead letter.
    #[serde(default = "defaults::events_max_attempts")]
    pub events_max_attempts: u32,
    /// `EVENTS_RETRY_BASE_MS`: the first retry's delay; each next one doubles
    /// (with jitter) up to `EVENTS_RETRY_MAX_SECS`.
    #[serde(default = "defaults::events_retry_base_ms")]
    pub events_retry_base_ms: u64,
    /// `EVENTS_RETRY_MAX_SECS`: the longest delay between two attempts.
    #[serde(default = "defaults::events_retry_max_secs")]
    pub events_retry_max_secs: u64,
    /// `EVENTS_BACKLOG_LIMIT`: unconsumed events above which non-critical
    /// writes answer 503 `overloaded`.
    #[serde(default = "defaults::events_backlog_limit")]
    pub events_backlog_limit: u64,
    /// `SMTP_URL`: the mail server, e.g. `smtp://127.0.0.1:1025` (plain) or
    /// `smtps://user:pass@host` (TLS); unset records emails instead of
    /// sending them (development transport).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub smtp_url: Option<SecretString>,
    /// `EMAIL_FROM`: the sender of notification emails.
    #[serde(default = "defaults::email_from")]
    pub email_from: String,
    /// `NOTIFICATIONS_MAX_ATTEMPTS`: attempts of a delivery (email, SMS,
    /// push) before it is marked failed.
    #[serde(default = "defaults::notifications_max_attempts")]
    pub notifications_max_attempts: u32,
    /// `NOTIFICATIONS_RETRY_BASE_MS`: the delay before a failed delivery's
    /// second attempt; each next one doubles (with jitter) up to
    /// `NOTIFICATIONS_RETRY_MAX_SECS`. Long, so that a mail server's outage
    /// of minutes does not fail the emails.
    #[serde(default = "defaults::notifications_retry_base_ms")]
    pub notifications_retry_base_ms: u64,
    /// `NOTIFICATIONS_RETRY_MAX_SECS`: the longest delay between attempts.
    #[serde(default = "defaults::notifications_retry_max_secs")]
    pub notifications_retry_max_secs: u64,
    /// `NOTIFICATIONS_REVIEW_PROMPT_DELAY_SECS`: how long after a booking
    /// completes both parties are asked for a review.
    #[serde(default = "defaults::notifications_review_prompt_delay_secs")]
    pub notifications_review_prompt_delay_secs: u64,
    /// `REVIEWS_WINDOW_SECS`: how long after a booking completes its
    /// parties may review it; a lone review stays sealed (double-blind)
    /// until then.
    #[serde(default = "defaults::reviews_window_secs")]
    pub reviews_window_secs: u64,
    /// `RETENTION_EVENTS_DAYS`: outbox events and processed-event keys older
    /// than this are deleted by the daily retention job.
    #[serde(default = "defaults::retention_events_days")]
    pub retention_events_days: u32,
    /// `RETENTION_NOTIFICATIONS_DAYS`: read notifications and finished
    /// deliveries older than this are deleted.
    #[serde(default = "defaults::retention_notifications_days")]
    pub retention_notifications_days: u32,
}

/// Where the service runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    #[default]
    Development,
    Production,
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// An on/off switch variable.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    #[default]
    On,
    Off,
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads and validates the given variables; tests use this to build a
    /// configuration without touching the process environment.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config: Config =
            envy::from_iter(vars).map_err(|e| ConfigError(describe_envy_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let db = self.database_url.expose_secret();
        if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(ConfigError(
                "DATABASE_URL must start with postgres:// or postgresql://".into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError(
                "DATABASE_MAX_CONNECTIONS must be at least 1".into(),
            ));
        }
        if let Some(redis) = &self.redis_url
            && !redis.expose_secret().starts_with("redis://")
            && !redis.expose_secret().starts_with("rediss://")
        {
            return Err(ConfigError(
                "REDIS_URL must start with redis:// or rediss://".into(),
            ));
        }
        if let Some(nats) = &self.nats_url
            && !nats.expose_secret().contains("://")
        {
            return Err(ConfigError(
                "NATS_URL must be a URL such as nats://127.0.0.1:4222".into(),
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError(
                "REQUEST_TIMEOUT_SECS must be at least 1".into(),
            ));
        }
        if self.idempotency_ttl_hours == 0 {
            return Err(ConfigError(
                "IDEMPOTENCY_TTL_HOURS must be at least 1".into(),
            ));
        }
        if self.rate_limit_block_after == 0 {
            return Err(ConfigError(
                "RATE_LIMIT_BLOCK_AFTER must be at least 1".into(),
            ));
        }
        if self.media_max_upload_bytes == 0 || self.media_upload_url_ttl_secs == 0 {
            return Err(ConfigError(
                "MEDIA_MAX_UPLOAD_BYTES and MEDIA_UPLOAD_URL_TTL_SECS must be at least 1".into(),
            ));
        }
        if self.booking_approval_window_secs == 0 {
            return Err(ConfigError(
                "BOOKING_APPROVAL_WINDOW_SECS must be at least 1".into(),
            ));
        }
        if self.reviews_window_secs == 0 {
            return Err(ConfigError("REVIEWS_WINDOW_SECS must be at least 1".into()));
        }
        if self.payments_gateway_timeout_ms == 0
            || self.payments_breaker_threshold == 0
            || self.payments_hold_timeout_secs == 0
            || self.fraud_max_transactions_per_hour == 0
            || self.fraud_amount_factor == 0
        {
            return Err(ConfigError(
                "PAYMENTS_GATEWAY_TIMEOUT_MS, PAYMENTS_BREAKER_THRESHOLD, PAYMENTS_HOLD_TIMEOUT_SECS, FRAUD_MAX_TRANSACTIONS_PER_HOUR and FRAUD_AMOUNT_FACTOR must be at least 1".into(),
            ));
        }
        if self.payments_owner_commission_bps > 5_000 {
            return Err(ConfigError(
                "PAYMENTS_OWNER_COMMISSION_BPS is at most 5000 (50 %)".into(),
            ));
        }
        if [
            self.sandbox_webhook_duplicate_percent,
            self.sandbox_failure_percent,
            self.sandbox_timeout_percent,
        ]
        .iter()
        .any(|&p| p > 100)
        {
            return Err(ConfigError(
                "SANDBOX_*_PERCENT are percentages (0 to 100)".into(),
            ));
        }
        if self.events_batch_size == 0
            || self.events_poll_ms == 0
            || self.search_refresh_ms == 0
            || self.events_max_attempts == 0
            || self.events_retry_base_ms == 0
            || self.events_retry_max_secs == 0
            || self.events_backlog_limit == 0
            || self.notifications_max_attempts == 0
            || self.notifications_retry_base_ms == 0
            || self.notifications_retry_max_secs == 0
            || self.retention_events_days == 0
            || self.retention_notifications_days == 0
        {
            return Err(ConfigError(
                "EVENTS_*, SEARCH_REFRESH_MS, NOTIFICATIONS_MAX_ATTEMPTS, NOTIFICATIONS_RETRY_* and RETENTION_*_DAYS must be at least 1"
                    .into(),
            ));
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !token(&self.nats_stream) || !token(&self.nats_subject_prefix) {
            return Err(ConfigError(
                "NATS_STREAM and NATS_SUBJECT_PREFIX are made of letters, digits, _ and -".into(),
            ));
        }
        if let Some(smtp) = &self.smtp_url
            && !smtp.expose_secret().starts_with("smtp://")
            && !smtp.expose_secret().starts_with("smtps://")
        {
            return Err(ConfigError(
                "SMTP_URL must start with smtp:// or smtps://".into(),
            ));
        }
        if self.worker_concurrency == 0 {
            return Err(ConfigError("WORKER_CONCURRENCY must be at least 1".into()));
        }
        if self.app_env == AppEnv::Production {
            for (name, value) in [
                ("PII_ENCRYPTION_KEYS", &self.pii_encryption_keys),
                ("BLIND_INDEX_KEY", &self.blind_index_key),
                ("KYC_WEBHOOK_SECRET", &self.kyc_webhook_secret),
                ("MEDIA_SIGNING_KEY", &self.media_signing_key),
                ("PAYMENTS_WEBHOOK_SECRET", &self.payments_webhook_secret),
            ] {
                if value.is_none() {
                    return Err(ConfigError(format!(
                        "{name} is required when APP_ENV=production"
                    )));
                }
            }
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_days == 0 {
            return Err(ConfigError(
                "ACCESS_TOKEN_TTL_SECS and REFRESH_TOKEN_TTL_DAYS must be at least 1".into(),
            ));
        }
        if self.lockout_threshold == 0 || self.lockout_window_mins == 0 {
            return Err(ConfigError(
                "LOCKOUT_THRESHOLD and LOCKOUT_WINDOW_MINS must be at least 1".into(),
            ));
        }
        if self.oidc_issuer_url.is_some() != self.oidc_client_id.is_some() {
            return Err(ConfigError(
                "OIDC_ISSUER_URL and OIDC_CLIENT_ID are set together (or neither)".into(),
            ));
        }
        for origin in &self.cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "CORS_ALLOWED_ORIGINS: `{origin}` is not an origin such as https://app.example.com"
                )));
            }
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn search_refresh(&self) -> Duration {
        Duration::from_millis(self.search_refresh_ms)
    }

    pub fn job_poll_interval(&self) -> Duration {
        Duration::from_millis(self.job_poll_interval_ms.max(10))
    }

    /// `iss` of the access tokens this service signs.
    pub fn jwt_issuer(&self) -> &str {
        self.jwt_issuer.as_deref().unwrap_or(&self.public_base_url)
    }

    pub fn oidc_redirect_url(&self) -> String {
        self.oidc_redirect_url.clone().unwrap_or_else(|| {
            format!(
                "{}/v1/auth/oidc/callback",
                self.public_base_url.trim_end_matches('/')
            )
        })
    }

    pub fn rate_limits_enabled(&self) -> bool {
        self.rate_limits == Switch::On
    }
}

/// Turns envy's messages (which name the serde field) into ones naming the
/// environment variable an operator has to fix.
fn describe_envy_error(error: envy::Error) -> String {
    match error {
        envy::Error::MissingValue(field) => format!("{} is required", field.to_uppercase()),
        envy::Error::Custom(message) => {
            // envy reports "<reason> while parsing value '<v>' provided by <FIELD>"
            // without leaking the value for our secret-free variables; keep it.
            message
        }
    }
}

fn empty_as_none<'de, D>(deserializer: D) -> Result<Option<SecretString>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value
        .filter(|v| !v.trim().is_empty())
        .map(SecretString::from))
}

fn empty_string_as_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.trim().is_empty()))
}

fn comma_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value: String = String::deserialize(deserializer)?;
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

/// Quota parsers that name their variable in the error (serde's custom
/// errors do not carry the field name).
mod quota_vars {
    use serde::Deserialize;

    use crate::ratelimit::Quota;

    fn parse<'de, D: serde::Deserializer<'de>>(d: D, var: &str) -> Result<Quota, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse()
            .map_err(|e| serde::de::Error::custom(format!("{var}: {e}")))
    }
    pub fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        parse(d, "RATE_LIMIT_READ")
    }
    pub fn write<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        parse(d, "RATE_LIMIT_WRITE")
    }
    pub fn auth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        parse(d, "RATE_LIMIT_AUTH")
    }
    pub fn login<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        parse(d, "RATE_LIMIT_LOGIN")
    }
    pub fn register<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        parse(d, "RATE_LIMIT_REGISTER")
    }
    pub fn signup<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Quota, D::Error> {
        parse(d, "SIGNUP_VELOCITY")
    }
}

mod defaults {
    use std::net::{IpAddr, Ipv4Addr};

    use secrecy::SecretString;

    use crate::ratelimit::Quota;

    pub fn media_dir() -> String {
        "var/media".into()
    }
    pub fn media_max_upload_bytes() -> u64 {
        10 * 1024 * 1024
    }
    pub fn media_upload_url_ttl_secs() -> u64 {
        900
    }
    pub fn booking_approval_window_secs() -> u64 {
        24 * 3600
    }
    pub fn payments_gateway_timeout_ms() -> u64 {
        3_000
    }
    pub fn payments_breaker_threshold() -> u32 {
        5
    }
    pub fn payments_breaker_open_secs() -> u64 {
        10
    }
    pub fn payments_hold_timeout_secs() -> u64 {
        15 * 60
    }
    pub fn payments_owner_commission_bps() -> u32 {
        300
    }
    pub fn fraud_max_transactions_per_hour() -> u32 {
        10
    }
    pub fn fraud_amount_factor() -> u32 {
        5
    }
    pub fn fraud_deposit_withdraw_window_secs() -> u64 {
        3600
    }
    pub fn nats_stream() -> String {
        "RENTIFY_EVENTS".into()
    }
    pub fn nats_subject_prefix() -> String {
        "rentify".into()
    }
    pub fn events_batch_size() -> u32 {
        500
    }
    pub fn events_poll_ms() -> u64 {
        20
    }
    pub fn search_refresh_ms() -> u64 {
        100
    }
    pub fn events_max_attempts() -> u32 {
        8
    }
    pub fn events_retry_base_ms() -> u64 {
        500
    }
    pub fn events_retry_max_secs() -> u64 {
        3600
    }
    pub fn events_backlog_limit() -> u64 {
        50_000
    }
    pub fn email_from() -> String {
        "Rentify <no-reply@rentify.local>".into()
    }
    pub fn notifications_max_attempts() -> u32 {
        8
    }
    pub fn notifications_retry_base_ms() -> u64 {
        30_000
    }
    pub fn notifications_retry_max_secs() -> u64 {
        3600
    }
    pub fn notifications_review_prompt_delay_secs() -> u64 {
        24 * 3600
    }
    pub fn reviews_window_secs() -> u64 {
        14 * 24 * 3600
    }
    pub fn retention_events_days() -> u32 {
        90
    }
    pub fn retention_notifications_days() -> u32 {
        180
    }

    pub fn host() -> IpAddr {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
    pub fn port() -> u16 {
        8080
    }
    pub fn public_base_url() -> String {
        "http://localhost:8080".into()
    }
    pub fn database_url() -> SecretString {
        SecretString::from("postgres://postgres@127.0.0.1:5432/rentify")
    }
    pub fn database_max_connections() -> u32 {
        20
    }
    pub fn request_timeout_secs() -> u64 {
        30
    }
    pub fn shutdown_grace_secs() -> u64 {
        30
    }
    pub fn rate_limit_read() -> Quota {
        Quota::per_minute(600)
    }
    pub fn rate_limit_write() -> Quota {
        Quota::per_minute(120)
    }
    pub fn rate_limit_auth() -> Quota {
        Quota::per_minute(20)
    }
    pub fn rate_limit_login() -> Quota {
        Quota::per_minute(10)
    }
    pub fn rate_limit_register() -> Quota {
        Quota::per_minute(5)
    }
    pub fn signup_velocity() -> Quota {
        Quota {
            limit: 20,
            period: std::time::Duration::from_secs(86_400),
        }
    }
    pub fn jwt_audience() -> String {
        "rentify".into()
    }
    pub fn access_token_ttl_secs() -> u64 {
        900
    }
    pub fn refresh_token_ttl_days() -> u32 {
        30
    }
    pub fn lockout_threshold() -> u32 {
        5
    }
    pub fn lockout_window_mins() -> u32 {
        15
    }
    pub fn rate_limit_block_after() -> u32 {
        10
    }
    pub fn idempotency_ttl_hours() -> u32 {
        24
    }
    pub fn worker_concurrency() -> usize {
        4
    }
    pub fn job_poll_interval_ms() -> u64 {
        1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.request_timeout(), Duration::from_secs(30));
        assert!(config.redis_url.is_none());
        assert!(config.rate_limits_enabled());
        assert_eq!(config.rate_limit_auth, Quota::per_minute(20));
    }

    #[test]
    fn a_bad_variable_is_named() {
        let err = Config::from_vars(vars(&[("PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = Config::from_vars(vars(&[("DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        let err = Config::from_vars(vars(&[("RATE_LIMIT_READ", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RATE_LIMIT_READ"), "{err}");
        let err = Config::from_vars(vars(&[("REDIS_URL", "localhost:6379")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("REDIS_URL"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config =
            Config::from_vars(vars(&[("DATABASE_URL", "postgres://u:hunter2@db/x")])).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn empty_optional_urls_mean_unset_and_lists_split() {
        let config = Config::from_vars(vars(&[
            ("REDIS_URL", ""),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("RATE_LIMITS", "off"),
        ]))
        .unwrap();
        assert!(config.redis_url.is_none());
        assert_eq!(config.cors_allowed_origins.len(), 2);
        assert!(!config.rate_limits_enabled());
    }
}
