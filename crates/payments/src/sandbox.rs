//! A card processor that runs inside Rentify, behaving like Stripe's test
//! mode, so the whole money path (authorizations, captures, refunds,
//! payouts, signed webhooks) can run in development, CI and load tests
//! without a network or an account.
//!
//! It is deliberately a *hostile* processor when asked to be: it can fail
//! calls, lose answers after applying them, answer slowly, duplicate,
//! delay, reorder and hold webhooks ([`SandboxConfig`], [`Fault`]). The
//! payment code has to be correct under all of that, because a real
//! processor does each of those things sometimes.
//!
//! Its books live in the `sandbox_gateway` schema (migration
//! `20261122000008_sandbox_gateway.sql`): several Rentify processes then see
//! one processor, and its state survives restarts. What does not survive a
//! restart is its webhook queue, which lives in memory: dropping the
//! `Sandbox` drops undelivered webhooks, as a processor that went away
//! would (payouts still pending at a restart are settled by the next
//! `Sandbox` that starts).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rand::seq::SliceRandom;
use rentify_platform::webhook_signature::signature_header;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::gateway::{
    AuthorizeRequest, Card, GatewayError, GatewayRecord, IntentState, IntentStatus, Operation,
    PaymentGateway, PayoutDestination, WebhookData, WebhookEvent,
};

/// The largest amount one call may move, in minor units (Stripe's limit
/// for most currencies): a guard against unit mistakes (cents vs euros).
pub const MAX_AMOUNT: i64 = 99_999_999;

/// How many times a webhook is attempted before the sandbox gives up.
const DELIVERY_ATTEMPTS: u32 = 10;
/// The first back-off between attempts; it doubles after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long after `payout` a payout settles (`payout.paid` /
/// `payout.failed`): banks are never instant, and the payout code must
/// cope with the answer coming only by webhook.
const PAYOUT_SETTLE: Duration = Duration::from_millis(50);

/// How hostile the sandbox is. The default is a well-behaved processor;
/// tests and load runs turn the knobs to prove the payment code survives
/// what real processors do now and then.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// Percentage of webhook events delivered twice (at-least-once delivery).
    pub duplicate_percent: u8,
    /// Each delivery first waits a random 0..=`max_delay_ms`, which also
    /// reorders events.
    pub max_delay_ms: u64,
    /// Percentage of gateway calls that fail with `Unavailable` and no
    /// effect (a 5xx before the processor did anything).
    pub failure_percent: u8,
    /// Percentage of gateway calls that take effect but whose answer is
    /// lost (`Unavailable("timeout")`); the webhook still goes out, which is
    /// how Rentify learns the outcome.
    pub timeout_percent: u8,
}

/// A fault for the next gateway call, injected by a test that needs one
/// particular failure at one particular step (random chaos cannot aim).
/// Faults queue up: each call consumes the oldest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with `Unavailable` without any effect.
    Unavailable,
    /// The call takes effect, then answers `Unavailable("timeout")`.
    LostResponse,
    /// The call takes effect, then waits this long before answering, to
    /// trip the caller's timeout (the effect stays even if the caller gives
    /// up, as it would at a remote processor).
    Slow(Duration),
}

/// The sandbox processor. Share it as `Arc<Sandbox>` (what [`Sandbox::new`]
/// returns); usually wrapped in [`crate::breaker::Guarded`].
pub struct Sandbox {
    core: Arc<Core>,
    config: SandboxConfig,
    faults: Mutex<VecDeque<Fault>>,
}

/// The processor's side of a call. Calls run as their own tasks so that a
/// caller that gives up (timeout, cancellation) does not undo half a call:
/// a remote processor finishes what it received.
struct Core {
    db: PgPool,
    duplicate_percent: u8,
    jobs: mpsc::UnboundedSender<Job>,
    hub: Arc<Hub>,
}

/// The webhook sender's shared state. The delivery task owns only this
/// (not [`Core`]), so it ends when the last `Core` — the only holder of the
/// job sender — is dropped.
struct Hub {
    secret: Vec<u8>,
    client: reqwest::Client,
    url: watch::Sender<Option<String>>,
    max_delay_ms: u64,
    state: Mutex<HubState>,
    /// Deliveries (and payout settlements) under way; see `wait_idle`.
    busy: AtomicUsize,
    idle: Notify,
}

#[derive(Default)]
struct HubState {
    paused: bool,
    held: Vec<WebhookEvent>,
    sent: Vec<WebhookEvent>,
}

/// Events to deliver one after the other.
struct Job {
    events: Vec<WebhookEvent>,
    /// Apply the random chaos delay first.
    delay: bool,
    busy: Busy,
}

/// Counts a delivery as under way until dropped (done, given up, held,
/// or aborted with the delivery task).
struct Busy(Arc<Hub>);

impl Busy {
    fn new(hub: &Arc<Hub>) -> Self {
        hub.busy.fetch_add(1, Ordering::SeqCst);
        Self(hub.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Sandbox {
    /// Starts the processor and its webhook delivery task (so it must be
    /// called inside a Tokio runtime). The task ends once the `Sandbox` is
    /// dropped. Webhooks wait in memory until [`Sandbox::set_webhook_url`]
    /// gives them somewhere to go.
    pub fn new(db: PgPool, webhook_secret: Vec<u8>, config: SandboxConfig) -> Arc<Sandbox> {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            secret: webhook_secret,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client without TLS always builds"),
            url: watch::Sender::new(None),
            max_delay_ms: config.max_delay_ms,
            state: Mutex::new(HubState::default()),
            busy: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        tokio::spawn(run_deliveries(hub.clone(), receiver));
        let core = Arc::new(Core {
            db,
            duplicate_percent: config.duplicate_percent,
            jobs,
            hub,
        });
        let sweeper = core.clone();
        let busy = Busy::new(&core.hub);
        tokio::spawn(async move {
            sweeper.settle_stale_payouts().await;
            drop(busy);
        });
        Arc::new(Sandbox {
            core,
            config,
            faults: Mutex::new(VecDeque::new()),
        })
    }

    /// Where webhooks go from now on (tests bind port 0, so the URL is only
    /// known after the sandbox exists). Queued events go out at once.
    pub fn set_webhook_url(&self, url: String) {
        self.core.hub.url.send_replace(Some(url));
    }

    /// Queues a fault for the next gateway call.
    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).push_back(fault);
    }

    /// Holds every delivery (including retries) until a resume, so a test
    /// can make things happen before the webhooks about them arrive.
    pub fn pause_webhooks(&self) {
        lock(&self.core.hub.state).paused = true;
    }

    /// Delivers everything held, in the order it was held.
    pub fn resume_webhooks(&self) {
        self.resume(false);
    }

    /// Delivers everything held in a random order: webhooks are not
    /// ordered, and the handlers must not assume they are.
    pub fn resume_webhooks_shuffled(&self) {
        self.resume(true);
    }

    fn resume(&self, shuffle: bool) {
        let mut events = {
            let mut state = lock(&self.core.hub.state);
            state.paused = false;
            std::mem::take(&mut state.held)
        };
        if shuffle {
            events.shuffle(&mut rand::rng());
        }
        if !events.is_empty() {
            self.core.submit(events, false);
        }
    }

    /// Sends a past event again `times` times, as a processor retrying
    /// after a lost acknowledgement would; returns once those deliveries
    /// are done (or held). False when no such event was emitted.
    pub async fn deliver_again(&self, event_id: &str, times: usize) -> bool {
        let event = lock(&self.core.hub.state)
            .sent
            .iter()
            .find(|e| e.id == event_id)
            .cloned();
        let Some(event) = event else {
            return false;
        };
        for _ in 0..times {
            let _busy = Busy::new(&self.core.hub);
            deliver(&self.core.hub, event.clone()).await;
        }
        true
    }

    /// Sends every event emitted so far again, `times` times each, in
    /// emission order; returns once those deliveries are done (or held).
    pub async fn redeliver_all(&self, times: usize) {
        let events = self.sent_events();
        for _ in 0..times {
            for event in &events {
                let _busy = Busy::new(&self.core.hub);
                deliver(&self.core.hub, event.clone()).await;
            }
        }
    }

    /// Every event this sandbox emitted, in emission order, delivered yet
    /// or not (duplicates and redeliveries appear once).
    pub fn sent_events(&self) -> Vec<WebhookEvent> {
        lock(&self.core.hub.state).sent.clone()
    }

    /// Waits until no delivery, retry or payout settlement is under way
    /// (held events do not count); false if that did not happen `within`.
    /// Lets a test wait for the webhooks instead of sleeping.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let hub = &self.core.hub;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = hub.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if hub.busy.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return hub.busy.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// How many capture operations the processor recorded for an intent:
    /// the number a double capture would make 2.
    ///
    /// # Panics
    /// If the database cannot be queried (a test helper).
    pub async fn capture_count(&self, rentify_intent_id: Uuid) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM sandbox_gateway.operations o
             JOIN sandbox_gateway.intents i ON i.id = o.intent_id
             WHERE o.kind = 'capture' AND i.rentify_intent_id = $1",
        )
        .bind(rentify_intent_id)
        .fetch_one(&self.core.db)
        .await
        .expect("the sandbox gateway's tables are reachable")
    }

    /// Runs one gateway call through the configured chaos and the injected
    /// faults.
    async fn call<T, F, Fut>(&self, op: &str, work: F) -> Result<T, GatewayError>
    where
        F: FnOnce(Arc<Core>) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>> + Send + 'static,
        T: Send + 'static,
    {
        let fault = lock(&self.faults).pop_front();
        let fail = fault == Some(Fault::Unavailable) || chance(self.config.failure_percent);
        let lose = fault == Some(Fault::LostResponse) || chance(self.config.timeout_percent);
        if fail {
            tracing::debug!(op, "sandbox gateway: failing a call without effect");
            return Err(GatewayError::Unavailable(format!(
                "sandbox gateway: 503 on {op}"
            )));
        }
        let result = tokio::spawn(work(self.core.clone()))
            .await
            .unwrap_or_else(|e| {
                Err(GatewayError::Unavailable(format!(
                    "sandbox gateway: 500 on {op}: {e}"
                )))
            });
        if let Some(Fault::Slow(pause)) = fault {
            tokio::time::sleep(pause).await;
        }
        if lose {
            tracing::debug!(op, "sandbox gateway: losing the answer of an applied call");
            return Err(GatewayError::Unavailable("timeout".into()));
        }
        result
    }
}

#[async_trait]
impl PaymentGateway for Sandbox {
    async fn create_method(&self, token: &str) -> Result<Card, GatewayError> {
        let token = token.to_owned();
        self.call("create_method", move |core| async move {
            core.create_method(&token).await
        })
        .await
    }

    async fn authorize(&self, req: &AuthorizeRequest) -> Result<IntentState, GatewayError> {
        let req = req.clone();
        self.call("authorize", move |core| async move {
            core.authorize(&req).await
        })
        .await
    }

    async fn capture(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<IntentState, GatewayError> {
        let key = idempotency_key.to_owned();
        self.call("capture", move |core| async move {
            core.capture(&key, intent_id, amount).await
        })
        .await
    }

    async fn void(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
    ) -> Result<IntentState, GatewayError> {
        let key = idempotency_key.to_owned();
        self.call("void", move |core| async move {
            core.void(&key, intent_id).await
        })
        .await
    }

    async fn refund(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<Operation, GatewayError> {
        let key = idempotency_key.to_owned();
        self.call("refund", move |core| async move {
            core.refund(&key, intent_id, amount).await
        })
        .await
    }

    async fn create_payout_destination(
        &self,
        token: &str,
    ) -> Result<PayoutDestination, GatewayError> {
        let token = token.to_owned();
        self.call("create_payout_destination", move |core| async move {
            core.create_payout_destination(&token).await
        })
        .await
    }

    async fn payout(
        &self,
        idempotency_key: &str,
        provider_account_id: &str,
        amount: i64,
        currency: &str,
    ) -> Result<Operation, GatewayError> {
        let key = idempotency_key.to_owned();
        let account = provider_account_id.to_owned();
        let currency = currency.to_owned();
        self.call("payout", move |core| async move {
            core.payout(&key, &account, amount, &currency).await
        })
        .await
    }

    async fn records(&self, day: NaiveDate) -> Result<Vec<GatewayRecord>, GatewayError> {
        self.call(
            "records",
            move |core| async move { core.records(day).await },
        )
        .await
    }
}

/// A Stripe test token and what a card made from it does.
struct TestCard {
    brand: &'static str,
    last4: &'static str,
    behaviour: &'static str,
}

fn test_card(token: &str) -> Option<TestCard> {
    let (brand, last4, behaviour) = match token {
        "tok_visa" => ("visa", "4242", "succeed"),
        "tok_mastercard" => ("mastercard", "4444", "succeed"),
        "tok_chargeDeclined" => ("visa", "0002", "decline"),
        "tok_insufficientFunds" => ("visa", "9995", "insufficient_funds"),
        _ => return None,
    };
    Some(TestCard {
        brand,
        last4,
        behaviour,
    })
}

/// Whether `input` is (probably) a card number rather than a token: 12 to
/// 19 digits, possibly grouped with spaces or dashes. Rentify must never
/// see card numbers (PCI scope), so the sandbox refuses them loudly.
fn looks_like_card_number(input: &str) -> bool {
    let digits: Vec<char> = input
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    (12..=19).contains(&digits.len()) && digits.iter().all(char::is_ascii_digit)
}

fn check_amount(amount: i64) -> Result<(), GatewayError> {
    if amount <= 0 {
        return Err(GatewayError::Invalid(format!(
            "amount must be positive, got {amount}"
        )));
    }
    if amount > MAX_AMOUNT {
        return Err(GatewayError::Invalid(format!(
            "amount must be at most {MAX_AMOUNT}, got {amount}"
        )));
    }
    Ok(())
}

fn check_currency(currency: &str) -> Result<(), GatewayError> {
    if currency.len() == 3 && currency.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(GatewayError::Invalid(format!(
            "currency must be a three-letter ISO code, got {currency:?}"
        )))
    }
}

fn check_key(key: &str) -> Result<(), GatewayError> {
    if key.is_empty() || key.len() > 255 {
        Err(GatewayError::Invalid(
            "the idempotency key must be 1 to 255 bytes".into(),
        ))
    } else {
        Ok(())
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

fn chance(percent: u8) -> bool {
    percent > 0 && rand::random_range(0..100u8) < percent
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn storage(e: sqlx::Error) -> GatewayError {
    GatewayError::Unavailable(format!("sandbox gateway storage: {e}"))
}

fn not_found(what: &str) -> GatewayError {
    GatewayError::Invalid(format!("no such {what}"))
}

#[derive(sqlx::FromRow)]
struct IntentRow {
    id: String,
    rentify_intent_id: Uuid,
    method_id: String,
    amount: i64,
    currency: String,
    status: String,
    amount_captured: i64,
    amount_refunded: i64,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

const INTENT_COLUMNS: &str = "id, rentify_intent_id, method_id, amount, currency, status, \
     amount_captured, amount_refunded, failure_code, failure_message";

impl IntentRow {
    fn status(&self) -> IntentStatus {
        match self.status.as_str() {
            "authorized" => IntentStatus::Authorized,
            "captured" => IntentStatus::Captured,
            "voided" => IntentStatus::Voided,
            _ => IntentStatus::Failed,
        }
    }

    fn state(&self) -> IntentState {
        IntentState {
            provider_intent_id: self.id.clone(),
            status: self.status(),
            amount: self.amount,
            amount_captured: self.amount_captured,
            amount_refunded: self.amount_refunded,
            currency: self.currency.clone(),
        }
    }

    fn declined(&self) -> GatewayError {
        GatewayError::Declined {
            code: self.failure_code.clone().unwrap_or_default(),
            message: self.failure_message.clone().unwrap_or_default(),
        }
    }

    fn event(&self, event_type: &str, amount: i64) -> WebhookEvent {
        event(
            event_type,
            WebhookData {
                provider_intent_id: Some(self.id.clone()),
                rentify_intent_id: Some(self.rentify_intent_id),
                amount,
                currency: self.currency.clone(),
                failure_code: self.failure_code.clone(),
                failure_message: self.failure_message.clone(),
                ..WebhookData::default()
            },
        )
    }
}

fn event(event_type: &str, data: WebhookData) -> WebhookEvent {
    WebhookEvent {
        id: new_id("evt"),
        event_type: event_type.to_owned(),
        created: Utc::now().timestamp(),
        data,
    }
}

async fn lock_intent(
    conn: &mut PgConnection,
    rentify_intent_id: Uuid,
) -> Result<Option<IntentRow>, GatewayError> {
    sqlx::query_as(&format!(
        "SELECT {INTENT_COLUMNS} FROM sandbox_gateway.intents
         WHERE rentify_intent_id = $1 FOR UPDATE"
    ))
    .bind(rentify_intent_id)
    .fetch_optional(conn)
    .await
    .map_err(storage)
}

/// Serializes the calls made with one idempotency key (a transaction-scoped
/// advisory lock) and answers with the stored response if the key was
/// already used with the same request.
async fn replay(
    conn: &mut PgConnection,
    key: &str,
    request: &Value,
) -> Result<Option<Value>, GatewayError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('sandbox_gateway:' || $1, 0))")
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(storage)?;
    let stored: Option<(Value, Value)> =
        sqlx::query_as("SELECT request, response FROM sandbox_gateway.idempotency WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(storage)?;
    match stored {
        None => Ok(None),
        Some((stored_request, response)) if stored_request == *request => Ok(Some(response)),
        Some(_) => Err(GatewayError::Invalid(format!(
            "idempotency key {key:?} was already used with different parameters"
        ))),
    }
}

async fn remember(
    conn: &mut PgConnection,
    key: &str,
    request: &Value,
    response: &impl serde::Serialize,
) -> Result<(), GatewayError> {
    let response = serde_json::to_value(response)
        .map_err(|e| GatewayError::Unavailable(format!("sandbox gateway: {e}")))?;
    sqlx::query(
        "INSERT INTO sandbox_gateway.idempotency (key, request, response) VALUES ($1, $2, $3)",
    )
    .bind(key)
    .bind(request)
    .bind(response)
    .execute(conn)
    .await
    .map_err(storage)?;
    Ok(())
}

fn stored<T: serde::de::DeserializeOwned>(response: Value) -> Result<T, GatewayError> {
    serde_json::from_value(response)
        .map_err(|e| GatewayError::Unavailable(format!("sandbox gateway: stored response: {e}")))
}

async fn insert_operation(
    conn: &mut PgConnection,
    id: &str,
    kind: &str,
    intent_id: &str,
    reference: &str,
    amount: i64,
    currency: &str,
) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO sandbox_gateway.operations (id, kind, intent_id, reference, amount, currency)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(kind)
    .bind(intent_id)
    .bind(reference)
    .bind(amount)
    .bind(currency)
    .execute(conn)
    .await
    .map_err(storage)?;
    Ok(())
}

impl Core {
    /// Queues events for delivery after the change they describe committed.
    fn emit(&self, events: Vec<WebhookEvent>) {
        for event in events {
            lock(&self.hub.state).sent.push(event.clone());
            let copies = if chance(self.duplicate_percent) { 2 } else { 1 };
            for _ in 0..copies {
                self.submit(vec![event.clone()], true);
            }
        }
    }

    fn submit(&self, events: Vec<WebhookEvent>, delay: bool) {
        let job = Job {
            events,
            delay,
            busy: Busy::new(&self.hub),
        };
        if self.jobs.send(job).is_err() {
            tracing::warn!("sandbox gateway: the webhook delivery task is gone; event dropped");
        }
    }

    async fn create_method(&self, token: &str) -> Result<Card, GatewayError> {
        if looks_like_card_number(token) {
            return Err(GatewayError::Invalid(
                "raw card numbers are not accepted; tokenize on the client".into(),
            ));
        }
        let card = test_card(token).ok_or_else(|| not_found(&format!("token: {token:?}")))?;
        let id = new_id("pm");
        let exp_year: i16 = (chrono::Datelike::year(&Utc::now()) + 3)
            .try_into()
            .unwrap_or(i16::MAX);
        let exp_month: i16 = 12;
        sqlx::query(
            "INSERT INTO sandbox_gateway.methods (id, token, brand, last4, exp_month, exp_year, behaviour)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(token)
        .bind(card.brand)
        .bind(card.last4)
        .bind(exp_month)
        .bind(exp_year)
        .bind(card.behaviour)
        .execute(&self.db)
        .await
        .map_err(storage)?;
        Ok(Card {
            provider_method_id: id,
            brand: card.brand.into(),
            last4: card.last4.into(),
            exp_month,
            exp_year,
        })
    }

    async fn authorize(&self, req: &AuthorizeRequest) -> Result<IntentState, GatewayError> {
        check_amount(req.amount)?;
        check_currency(&req.currency)?;
        let mut tx = self.db.begin().await.map_err(storage)?;
        let mut existing = lock_intent(&mut tx, req.intent_id).await?;
        if existing.is_none() {
            let behaviour: Option<String> =
                sqlx::query_scalar("SELECT behaviour FROM sandbox_gateway.methods WHERE id = $1")
                    .bind(&req.provider_method_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(storage)?;
            let behaviour = behaviour.ok_or_else(|| not_found("payment method"))?;
            let (status, captured, failure) = match behaviour.as_str() {
                "decline" => (
                    "failed",
                    0,
                    Some(("card_declined", "Your card was declined.")),
                ),
                "insufficient_funds" => (
                    "failed",
                    0,
                    Some(("insufficient_funds", "Your card has insufficient funds.")),
                ),
                _ if req.capture => ("captured", req.amount, None),
                _ => ("authorized", 0, None),
            };
            let inserted: Option<IntentRow> = sqlx::query_as(&format!(
                "INSERT INTO sandbox_gateway.intents
                     (id, rentify_intent_id, method_id, amount, currency, description, status,
                      amount_captured, failure_code, failure_message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (rentify_intent_id) DO NOTHING
                 RETURNING {INTENT_COLUMNS}"
            ))
            .bind(new_id("pi"))
            .bind(req.intent_id)
            .bind(&req.provider_method_id)
            .bind(req.amount)
            .bind(&req.currency)
            .bind(&req.description)
            .bind(status)
            .bind(captured)
            .bind(failure.map(|f| f.0))
            .bind(failure.map(|f| f.1))
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage)?;
            match inserted {
                Some(row) => {
                    let event = match row.status() {
                        IntentStatus::Failed => {
                            row.event("payment_intent.authorization_failed", row.amount)
                        }
                        IntentStatus::Captured => {
                            insert_operation(
                                &mut tx,
                                &new_id("ch"),
                                "capture",
                                &row.id,
                                &req.intent_id.to_string(),
                                row.amount,
                                &row.currency,
                            )
                            .await?;
                            row.event("payment_intent.captured", row.amount_captured)
                        }
                        _ => row.event("payment_intent.authorized", row.amount),
                    };
                    tx.commit().await.map_err(storage)?;
                    self.emit(vec![event]);
                    return match row.status() {
                        IntentStatus::Failed => Err(row.declined()),
                        _ => Ok(row.state()),
                    };
                }
                // A concurrent authorization of the same intent won.
                None => existing = lock_intent(&mut tx, req.intent_id).await?,
            }
        }
        let row = existing.ok_or_else(|| not_found("payment intent"))?;
        tx.commit().await.map_err(storage)?;
        if row.method_id != req.provider_method_id
            || row.amount != req.amount
            || row.currency != req.currency
        {
            return Err(GatewayError::Invalid(format!(
                "intent {} was already authorized with different parameters",
                req.intent_id
            )));
        }
        match row.status() {
            IntentStatus::Failed => Err(row.declined()),
            _ => Ok(row.state()),
        }
    }

    async fn capture(
        &self,
        key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<IntentState, GatewayError> {
        check_key(key)?;
        check_amount(amount)?;
        let request = json!({"op": "capture", "intent": intent_id, "amount": amount});
        let mut tx = self.db.begin().await.map_err(storage)?;
        if let Some(response) = replay(&mut tx, key, &request).await? {
            return stored(response);
        }
        let mut row = lock_intent(&mut tx, intent_id)
            .await?
            .ok_or_else(|| not_found("payment intent"))?;
        let mut events = Vec::new();
        match row.status() {
            IntentStatus::Authorized => {
                if amount > row.amount {
                    return Err(GatewayError::Invalid(format!(
                        "cannot capture {amount}: only {} is authorized",
                        row.amount
                    )));
                }
                sqlx::query(
                    "UPDATE sandbox_gateway.intents
                     SET status = 'captured', amount_captured = $2, updated_at = now()
                     WHERE id = $1",
                )
                .bind(&row.id)
                .bind(amount)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
                insert_operation(
                    &mut tx,
                    &new_id("ch"),
                    "capture",
                    &row.id,
                    key,
                    amount,
                    &row.currency,
                )
                .await?;
                row.status = "captured".into();
                row.amount_captured = amount;
                events.push(row.event("payment_intent.captured", amount));
            }
            IntentStatus::Captured => {}
            IntentStatus::Voided => {
                return Err(GatewayError::Invalid(
                    "cannot capture a voided intent".into(),
                ));
            }
            IntentStatus::Failed => {
                return Err(GatewayError::Invalid(
                    "cannot capture a failed intent".into(),
                ));
            }
        }
        let state = row.state();
        remember(&mut tx, key, &request, &state).await?;
        tx.commit().await.map_err(storage)?;
        self.emit(events);
        Ok(state)
    }

    async fn void(&self, key: &str, intent_id: Uuid) -> Result<IntentState, GatewayError> {
        check_key(key)?;
        let request = json!({"op": "void", "intent": intent_id});
        let mut tx = self.db.begin().await.map_err(storage)?;
        if let Some(response) = replay(&mut tx, key, &request).await? {
            return stored(response);
        }
        let mut row = lock_intent(&mut tx, intent_id)
            .await?
            .ok_or_else(|| not_found("payment intent"))?;
        let mut events = Vec::new();
        match row.status() {
            IntentStatus::Authorized => {
                sqlx::query(
                    "UPDATE sandbox_gateway.intents
                     SET status = 'voided', updated_at = now() WHERE id = $1",
                )
                .bind(&row.id)
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
                row.status = "voided".into();
                events.push(row.event("payment_intent.voided", row.amount));
            }
            IntentStatus::Voided => {}
            IntentStatus::Captured => {
                return Err(GatewayError::Invalid(
                    "cannot void a captured intent; refund it".into(),
                ));
            }
            IntentStatus::Failed => {
                return Err(GatewayError::Invalid("cannot void a failed intent".into()));
            }
        }
        let state = row.state();
        remember(&mut tx, key, &request, &state).await?;
        tx.commit().await.map_err(storage)?;
        self.emit(events);
        Ok(state)
    }

    async fn refund(
        &self,
        key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<Operation, GatewayError> {
        check_key(key)?;
        check_amount(amount)?;
        let request = json!({"op": "refund", "intent": intent_id, "amount": amount});
        let mut tx = self.db.begin().await.map_err(storage)?;
        if let Some(response) = replay(&mut tx, key, &request).await? {
            return stored(response);
        }
        let mut row = lock_intent(&mut tx, intent_id)
            .await?
            .ok_or_else(|| not_found("payment intent"))?;
        if row.status() != IntentStatus::Captured {
            return Err(GatewayError::Invalid(format!(
                "cannot refund an intent that is {}",
                row.status
            )));
        }
        let refundable = row.amount_captured - row.amount_refunded;
        if amount > refundable {
            return Err(GatewayError::Invalid(format!(
                "cannot refund {amount}: only {refundable} of the captured amount is left"
            )));
        }
        sqlx::query(
            "UPDATE sandbox_gateway.intents
             SET amount_refunded = amount_refunded + $2, updated_at = now() WHERE id = $1",
        )
        .bind(&row.id)
        .bind(amount)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        let operation = Operation {
            provider_id: new_id("re"),
            amount,
            currency: row.currency.clone(),
        };
        insert_operation(
            &mut tx,
            &operation.provider_id,
            "refund",
            &row.id,
            key,
            amount,
            &row.currency,
        )
        .await?;
        row.amount_refunded += amount;
        remember(&mut tx, key, &request, &operation).await?;
        tx.commit().await.map_err(storage)?;
        self.emit(vec![row.event("charge.refunded", amount)]);
        Ok(operation)
    }

    async fn create_payout_destination(
        &self,
        token: &str,
    ) -> Result<PayoutDestination, GatewayError> {
        let behaviour = match token {
            "btok_ok" => "succeed",
            "btok_fail" => "fail",
            _ => return Err(not_found(&format!("bank account token: {token:?}"))),
        };
        let destination = PayoutDestination {
            provider_account_id: new_id("ba"),
            bank_name: "Sandbox Bank".into(),
            last4: "6789".into(),
        };
        sqlx::query(
            "INSERT INTO sandbox_gateway.destinations (id, token, bank_name, last4, behaviour)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&destination.provider_account_id)
        .bind(token)
        .bind(&destination.bank_name)
        .bind(&destination.last4)
        .bind(behaviour)
        .execute(&self.db)
        .await
        .map_err(storage)?;
        Ok(destination)
    }

    async fn payout(
        self: &Arc<Self>,
        key: &str,
        account: &str,
        amount: i64,
        currency: &str,
    ) -> Result<Operation, GatewayError> {
        check_key(key)?;
        check_amount(amount)?;
        check_currency(currency)?;
        let request = json!({
            "op": "payout", "account": account, "amount": amount, "currency": currency,
        });
        let mut tx = self.db.begin().await.map_err(storage)?;
        if let Some(response) = replay(&mut tx, key, &request).await? {
            return stored(response);
        }
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM sandbox_gateway.destinations WHERE id = $1")
                .bind(account)
                .fetch_optional(&mut *tx)
                .await
                .map_err(storage)?;
        if known.is_none() {
            return Err(not_found("payout destination"));
        }
        let operation = Operation {
            provider_id: new_id("po"),
            amount,
            currency: currency.to_owned(),
        };
        sqlx::query(
            "INSERT INTO sandbox_gateway.operations
                 (id, kind, destination_id, reference, amount, currency, status)
             VALUES ($1, 'payout', $2, $3, $4, $5, 'pending')",
        )
        .bind(&operation.provider_id)
        .bind(account)
        .bind(key)
        .bind(amount)
        .bind(currency)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        remember(&mut tx, key, &request, &operation).await?;
        tx.commit().await.map_err(storage)?;

        let core = self.clone();
        let payout_id = operation.provider_id.clone();
        let busy = Busy::new(&self.hub);
        tokio::spawn(async move {
            tokio::time::sleep(PAYOUT_SETTLE).await;
            if let Err(e) = core.settle_payout(&payout_id).await {
                tracing::warn!(payout_id, error = %e, "sandbox gateway: payout not settled");
            }
            drop(busy);
        });
        Ok(operation)
    }

    /// Settles a pending payout once, whichever process gets there first
    /// (the `status = 'pending'` guard), and announces the outcome.
    async fn settle_payout(&self, payout_id: &str) -> Result<(), GatewayError> {
        let settled: Option<(String, String, i64, String)> = sqlx::query_as(
            "UPDATE sandbox_gateway.operations o
             SET status = CASE d.behaviour WHEN 'fail' THEN 'failed' ELSE 'paid' END
             FROM sandbox_gateway.destinations d
             WHERE o.id = $1 AND o.status = 'pending' AND d.id = o.destination_id
             RETURNING o.status, o.reference, o.amount, o.currency",
        )
        .bind(payout_id)
        .fetch_optional(&self.db)
        .await
        .map_err(storage)?;
        let Some((status, reference, amount, currency)) = settled else {
            return Ok(());
        };
        let failed = status == "failed";
        self.emit(vec![event(
            if failed {
                "payout.failed"
            } else {
                "payout.paid"
            },
            WebhookData {
                provider_payout_id: Some(payout_id.to_owned()),
                payout_reference: Some(reference),
                amount,
                currency,
                failure_code: failed.then(|| "account_closed".to_owned()),
                failure_message: failed.then(|| "The bank account has been closed.".to_owned()),
                ..WebhookData::default()
            },
        )]);
        Ok(())
    }

    /// Settles the payouts a previous process left pending (it stopped
    /// before their settle timer fired). Only old ones: a young pending
    /// payout belongs to a live process, which settles it itself.
    async fn settle_stale_payouts(&self) {
        let stale: Result<Vec<String>, _> = sqlx::query_scalar(
            "SELECT id FROM sandbox_gateway.operations
             WHERE status = 'pending' AND created_at < now() - interval '1 minute'",
        )
        .fetch_all(&self.db)
        .await;
        match stale {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.settle_payout(&id).await {
                        tracing::warn!(payout_id = id, error = %e, "sandbox gateway: payout not settled");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sandbox gateway: cannot look for stale payouts"),
        }
    }

    async fn records(&self, day: NaiveDate) -> Result<Vec<GatewayRecord>, GatewayError> {
        let start: DateTime<Utc> = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let end = start + chrono::Duration::days(1);
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            DateTime<Utc>,
            Option<String>,
            Option<Uuid>,
        );
        // A failed payout moved no money (the bank sent it back), so it is
        // not a record to reconcile.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT o.kind, o.id, o.reference, o.amount, o.currency, o.created_at,
                    i.id, i.rentify_intent_id
             FROM sandbox_gateway.operations o
             LEFT JOIN sandbox_gateway.intents i ON i.id = o.intent_id
             WHERE o.created_at >= $1 AND o.created_at < $2 AND o.status <> 'failed'
             ORDER BY o.created_at, o.id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&self.db)
        .await
        .map_err(storage)?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    kind,
                    provider_id,
                    reference,
                    amount,
                    currency,
                    at,
                    provider_intent_id,
                    intent_id,
                )| {
                    GatewayRecord {
                        kind,
                        provider_id,
                        provider_intent_id,
                        intent_id,
                        reference: Some(reference),
                        amount,
                        currency,
                        at,
                    }
                },
            )
            .collect())
    }
}

/// The delivery task: runs each job as its own task, so one endpoint's
/// back-off never stalls the others. Ends (aborting what is left) when
/// every job sender — every `Core` — is gone.
async fn run_deliveries(hub: Arc<Hub>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                let hub = hub.clone();
                running.spawn(async move {
                    for event in job.events {
                        if job.delay && hub.max_delay_ms > 0 {
                            let pause = rand::random_range(0..=hub.max_delay_ms);
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                        deliver(&hub, event).await;
                    }
                    drop(job.busy);
                });
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

/// Delivers one event: waits for a URL, POSTs it signed, and retries with
/// exponential back-off on a non-2xx answer or a connection error, as
/// Stripe does. While webhooks are paused the event is held instead.
async fn deliver(hub: &Hub, event: WebhookEvent) {
    let body = match serde_json::to_vec(&event) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "sandbox gateway: cannot serialize a webhook");
            return;
        }
    };
    let mut url_changes = hub.url.subscribe();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=DELIVERY_ATTEMPTS {
        let Ok(url) = url_changes
            .wait_for(Option::is_some)
            .await
            .map(|url| url.clone().unwrap_or_default())
        else {
            return;
        };
        {
            let mut state = lock(&hub.state);
            if state.paused {
                state.held.push(event);
                return;
            }
        }
        let signature = signature_header(&hub.secret, Utc::now().timestamp(), &body);
        let outcome = hub
            .client
            .post(&url)
            .header("Rentify-Signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match outcome {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::debug!(
                event_id = event.id,
                attempt,
                status = %response.status(),
                "sandbox gateway: webhook refused; retrying"
            ),
            Err(e) => tracing::debug!(
                event_id = event.id,
                attempt,
                error = %e,
                "sandbox gateway: webhook not delivered; retrying"
            ),
        }
        if attempt < DELIVERY_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(
        event_id = event.id,
        event_type = event.event_type,
        "sandbox gateway: webhook given up after {DELIVERY_ATTEMPTS} attempts"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_recognised() {
        for number in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            " 4000 0000 0000 0002 ",
            "378282246310005",
            "123456789012",
            "1234567890123456789",
        ] {
            assert!(looks_like_card_number(number), "{number}");
        }
        for token in [
            "tok_visa",
            "12345678901",
            "12345678901234567890",
            "4242 4242 4242 424x",
            "",
            "pm_4242424242424242",
        ] {
            assert!(!looks_like_card_number(token), "{token}");
        }
    }

    #[test]
    fn test_tokens_map_to_stripe_cards() {
        let visa = test_card("tok_visa").unwrap();
        assert_eq!(
            (visa.brand, visa.last4, visa.behaviour),
            ("visa", "4242", "succeed")
        );
        let mc = test_card("tok_mastercard").unwrap();
        assert_eq!((mc.brand, mc.last4), ("mastercard", "4444"));
        assert_eq!(
            test_card("tok_chargeDeclined").unwrap().behaviour,
            "decline"
        );
        assert_eq!(test_card("tok_insufficientFunds").unwrap().last4, "9995");
        assert!(test_card("tok_unknown").is_none());
    }

    #[test]
    fn amounts_and_currencies_are_checked() {
        assert!(check_amount(1).is_ok());
        assert!(check_amount(MAX_AMOUNT).is_ok());
        assert!(matches!(check_amount(0), Err(GatewayError::Invalid(_))));
        assert!(matches!(check_amount(-5), Err(GatewayError::Invalid(_))));
        assert!(matches!(
            check_amount(MAX_AMOUNT + 1),
            Err(GatewayError::Invalid(_))
        ));
        assert!(check_currency("EUR").is_ok());
        assert!(check_currency("EURO").is_err());
        assert!(check_currency("E1R").is_err());
    }

    #[test]
    fn chance_is_never_and_always_at_the_ends() {
        assert!((0..1000).all(|_| !chance(0)));
        assert!((0..1000).all(|_| chance(100)));
    }
}
