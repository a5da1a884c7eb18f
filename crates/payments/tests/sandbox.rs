//! The sandbox gateway against a real PostgreSQL and a real HTTP listener
//! for its webhooks.
//!
//! Database: the server of `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432` (only host and credentials are
//! used); the database is `rentify_test_sandbox_<hash of the migrations>`,
//! created and migrated on first use, so a changed migration gets a fresh
//! one instead of a checksum error. Tests share it: every test uses its own
//! intents, keys and `Sandbox` (webhooks are per `Sandbox`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use rentify_payments::breaker::{BreakerConfig, Guarded};
use rentify_payments::gateway::{
    AuthorizeRequest, GatewayError, IntentStatus, PaymentGateway, WebhookEvent,
};
use rentify_payments::sandbox::{Fault, Sandbox, SandboxConfig};
use rentify_platform::webhook_signature::{TOLERANCE_SECS, verify_signature};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

const SECRET: &[u8] = b"whsec_sandbox_test";

// ---------------------------------------------------------------------------
// Harness

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/rentify_test_sandbox".into())
}

fn url_for_database(name: &str) -> String {
    let base = server_url();
    let (scheme, rest) = base.split_once("://").expect("a database URL");
    let host = rest.split('/').next().unwrap_or(rest);
    let query = base
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{host}/{name}{query}")
}

fn database_name() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for migration in rentify_platform::db::MIGRATOR.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    format!("rentify_test_sandbox_{:016x}", hasher.finish())
}

/// A pool on the shared, migrated test database (created on first use,
/// serialized across test processes by an advisory lock).
async fn db() -> PgPool {
    let name = database_name();
    let mut admin = PgConnection::connect(&url_for_database("postgres"))
        .await
        .expect("PostgreSQL must be running (see TEST_DATABASE_URL / DATABASE_URL)");
    admin
        .execute("SELECT pg_advisory_lock(74110008)")
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    if !exists {
        // Databases of older migration sets; one still in use stays.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'rentify\\_test\\_sandbox\\_%'",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        for old in stale {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS \"{old}\"").as_str())
                .await;
        }
        let building = format!("{name}_build");
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("CREATE DATABASE \"{building}\"").as_str())
            .await
            .unwrap();
        let pool = PgPool::connect(&url_for_database(&building)).await.unwrap();
        rentify_platform::db::MIGRATOR
            .run(&pool)
            .await
            .expect("the migrations apply to an empty database");
        pool.close().await;
        admin
            .execute(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"").as_str())
            .await
            .unwrap();
    }
    admin
        .execute("SELECT pg_advisory_unlock(74110008)")
        .await
        .unwrap();
    PgPoolOptions::new()
        .max_connections(30)
        .connect(&url_for_database(&name))
        .await
        .unwrap()
}

async fn sandbox(config: SandboxConfig) -> Arc<Sandbox> {
    Sandbox::new(db().await, SECRET.to_vec(), config)
}

/// One webhook request as the listener saw it.
#[derive(Clone, Debug)]
struct Hit {
    event: WebhookEvent,
    signature_ok: bool,
    json: bool,
    at: Instant,
}

#[derive(Default)]
struct Listener {
    hits: Mutex<Vec<Hit>>,
    /// Requests to answer 500 before accepting.
    refuse: AtomicUsize,
    requests: AtomicUsize,
}

impl Listener {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<WebhookEvent> {
        self.hits().into_iter().map(|h| h.event).collect()
    }

    /// Waits until `n` webhooks were accepted.
    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} webhooks, got {}: {:?}",
                hits.len(),
                hits.iter().map(|h| &h.event.event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept(
    State(listener): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    listener.requests.fetch_add(1, Ordering::SeqCst);
    if listener
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let signature = headers
        .get("rentify-signature")
        .and_then(|v| v.to_str().ok());
    let signature_ok = verify_signature(
        signature,
        &body,
        SECRET,
        Utc::now().timestamp(),
        TOLERANCE_SECS,
    )
    .is_ok();
    let json = headers
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    let Ok(event) = serde_json::from_slice::<WebhookEvent>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    listener.hits.lock().unwrap().push(Hit {
        event,
        signature_ok,
        json,
        at: Instant::now(),
    });
    StatusCode::OK
}

/// A local HTTP listener for webhooks, on a free port.
async fn listen(refuse_first: usize) -> (Arc<Listener>, String) {
    let listener = Arc::new(Listener::default());
    listener.refuse.store(refuse_first, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/webhooks", axum::routing::post(accept))
        .with_state(listener.clone());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, app).await });
    (listener, url)
}

async fn sandbox_with_listener(config: SandboxConfig) -> (Arc<Sandbox>, Arc<Listener>) {
    let sandbox = sandbox(config).await;
    let (listener, url) = listen(0).await;
    sandbox.set_webhook_url(url);
    (sandbox, listener)
}

fn request(method: &str, amount: i64, capture: bool) -> AuthorizeRequest {
    AuthorizeRequest {
        intent_id: Uuid::new_v4(),
        provider_method_id: method.to_owned(),
        amount,
        currency: "EUR".into(),
        capture,
        description: "test booking".into(),
    }
}

async fn method(sandbox: &Sandbox, token: &str) -> String {
    sandbox
        .create_method(token)
        .await
        .unwrap()
        .provider_method_id
}

fn of_type<'a>(events: &'a [WebhookEvent], event_type: &str) -> Vec<&'a WebhookEvent> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn key() -> String {
    Uuid::new_v4().to_string()
}

fn invalid<T: std::fmt::Debug>(result: Result<T, GatewayError>) -> String {
    match result {
        Err(GatewayError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Methods and destinations

#[tokio::test]
async fn methods_come_from_test_tokens_only() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let visa = sandbox.create_method("tok_visa").await.unwrap();
    assert!(visa.provider_method_id.starts_with("pm_"));
    assert_eq!((visa.brand.as_str(), visa.last4.as_str()), ("visa", "4242"));
    let mastercard = sandbox.create_method("tok_mastercard").await.unwrap();
    assert_eq!(
        (mastercard.brand.as_str(), mastercard.last4.as_str()),
        ("mastercard", "4444")
    );
    assert_eq!(
        sandbox
            .create_method("tok_chargeDeclined")
            .await
            .unwrap()
            .last4,
        "0002"
    );
    assert_eq!(
        sandbox
            .create_method("tok_insufficientFunds")
            .await
            .unwrap()
            .last4,
        "9995"
    );
    for raw in [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4000-0000-0000-0002",
    ] {
        assert_eq!(
            invalid(sandbox.create_method(raw).await),
            "raw card numbers are not accepted; tokenize on the client"
        );
    }
    invalid(sandbox.create_method("tok_nope").await);

    let bank = sandbox.create_payout_destination("btok_ok").await.unwrap();
    assert!(bank.provider_account_id.starts_with("ba_"));
    assert_eq!(
        (bank.bank_name.as_str(), bank.last4.as_str()),
        ("Sandbox Bank", "6789")
    );
    invalid(sandbox.create_payout_destination("btok_nope").await);
}

// ---------------------------------------------------------------------------
// Intents

#[tokio::test]
async fn authorize_is_idempotent_on_the_intent_id() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 12_500, false);
    let first = sandbox.authorize(&req).await.unwrap();
    assert!(first.provider_intent_id.starts_with("pi_"));
    assert_eq!(first.status, IntentStatus::Authorized);
    assert_eq!((first.amount, first.amount_captured), (12_500, 0));
    let again = sandbox.authorize(&req).await.unwrap();
    assert_eq!(again, first);

    let events = sandbox.sent_events();
    let authorized = of_type(&events, "payment_intent.authorized");
    assert_eq!(authorized.len(), 1, "{events:?}");
    assert_eq!(authorized[0].data.rentify_intent_id, Some(req.intent_id));
    assert_eq!(
        authorized[0].data.provider_intent_id.as_deref(),
        Some(first.provider_intent_id.as_str())
    );
    assert_eq!(authorized[0].data.amount, 12_500);
    assert_eq!(authorized[0].data.currency, "EUR");

    // The same intent id with other parameters is a mistake, not a retry.
    invalid(
        sandbox
            .authorize(&AuthorizeRequest {
                amount: 1,
                ..req.clone()
            })
            .await,
    );
    // Limits and unknown methods.
    invalid(sandbox.authorize(&request(&pm, 0, false)).await);
    invalid(sandbox.authorize(&request(&pm, 100_000_000, false)).await);
    sandbox
        .authorize(&request(&pm, 99_999_999, false))
        .await
        .unwrap();
    invalid(sandbox.authorize(&request("pm_unknown", 100, false)).await);
}

#[tokio::test]
async fn concurrent_authorizations_of_one_intent_make_one_intent() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 700, false);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (sandbox, req) = (sandbox.clone(), req.clone());
            tokio::spawn(async move { sandbox.authorize(&req).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().provider_intent_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        of_type(&sandbox.sent_events(), "payment_intent.authorized").len(),
        1
    );
}

#[tokio::test]
async fn declines_record_a_failed_intent_and_say_so() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    for (token, code) in [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_insufficientFunds", "insufficient_funds"),
    ] {
        let pm = method(&sandbox, token).await;
        let req = request(&pm, 5_000, false);
        for _ in 0..2 {
            match sandbox.authorize(&req).await {
                Err(GatewayError::Declined { code: got, message }) => {
                    assert_eq!(got, code);
                    assert!(!message.is_empty());
                }
                other => panic!("expected a decline, got {other:?}"),
            }
        }
        let events = sandbox.sent_events();
        let failed: Vec<_> = of_type(&events, "payment_intent.authorization_failed")
            .into_iter()
            .filter(|e| e.data.rentify_intent_id == Some(req.intent_id))
            .collect();
        assert_eq!(failed.len(), 1, "one event, however often it is asked");
        assert_eq!(failed[0].data.failure_code.as_deref(), Some(code));
        assert!(failed[0].data.failure_message.is_some());
        assert!(failed[0].data.provider_intent_id.is_some());
        assert_eq!(failed[0].data.amount, 5_000);

        invalid(sandbox.capture(&key(), req.intent_id, 5_000).await);
        invalid(sandbox.void(&key(), req.intent_id).await);
    }
    // A charge (capture: true) is declined the same way.
    let pm = method(&sandbox, "tok_chargeDeclined").await;
    assert!(matches!(
        sandbox.authorize(&request(&pm, 100, true)).await,
        Err(GatewayError::Declined { .. })
    ));
}

#[tokio::test]
async fn twenty_concurrent_captures_capture_once() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;

    // The same idempotency key, and then twenty different ones.
    for same_key in [true, false] {
        let req = request(&pm, 10_000, false);
        sandbox.authorize(&req).await.unwrap();
        let shared = key();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let sandbox = sandbox.clone();
                let key = if same_key { shared.clone() } else { key() };
                tokio::spawn(async move { sandbox.capture(&key, req.intent_id, 10_000).await })
            })
            .collect();
        for task in tasks {
            let state = task.await.unwrap().unwrap();
            assert_eq!(state.status, IntentStatus::Captured);
            assert_eq!(state.amount_captured, 10_000);
        }
        assert_eq!(sandbox.capture_count(req.intent_id).await, 1);
        let events = sandbox.sent_events();
        let captured: Vec<_> = of_type(&events, "payment_intent.captured")
            .into_iter()
            .filter(|e| e.data.rentify_intent_id == Some(req.intent_id))
            .collect();
        assert_eq!(captured.len(), 1);
        assert_eq!(captured[0].data.amount, 10_000);
    }
}

#[tokio::test]
async fn capture_and_void_follow_the_intent_status() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_mastercard").await;

    // Partial capture; more than authorized is refused.
    let req = request(&pm, 1_000, false);
    sandbox.authorize(&req).await.unwrap();
    invalid(sandbox.capture(&key(), req.intent_id, 1_001).await);
    invalid(sandbox.capture(&key(), req.intent_id, 0).await);
    let capture_key = key();
    let state = sandbox
        .capture(&capture_key, req.intent_id, 600)
        .await
        .unwrap();
    assert_eq!(
        (state.status, state.amount_captured),
        (IntentStatus::Captured, 600)
    );
    // The same key with another amount is refused; another key answers the
    // state without capturing again.
    invalid(sandbox.capture(&capture_key, req.intent_id, 700).await);
    let again = sandbox.capture(&key(), req.intent_id, 1_000).await.unwrap();
    assert_eq!(again.amount_captured, 600);
    assert_eq!(sandbox.capture_count(req.intent_id).await, 1);
    invalid(sandbox.void(&key(), req.intent_id).await);

    // Void, twice; then capture is refused.
    let req = request(&pm, 2_000, false);
    sandbox.authorize(&req).await.unwrap();
    let voided = sandbox.void(&key(), req.intent_id).await.unwrap();
    assert_eq!(voided.status, IntentStatus::Voided);
    let again = sandbox.void(&key(), req.intent_id).await.unwrap();
    assert_eq!(again.status, IntentStatus::Voided);
    invalid(sandbox.capture(&key(), req.intent_id, 2_000).await);
    let events = sandbox.sent_events();
    let voids = of_type(&events, "payment_intent.voided");
    assert_eq!(voids.len(), 1);
    assert_eq!(voids[0].data.rentify_intent_id, Some(req.intent_id));

    // Unknown intents.
    invalid(sandbox.capture(&key(), Uuid::new_v4(), 1).await);
    invalid(sandbox.void(&key(), Uuid::new_v4()).await);
    invalid(sandbox.refund(&key(), Uuid::new_v4(), 1).await);
}

#[tokio::test]
async fn refunds_are_capped_by_the_capture_and_idempotent() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 1_000, true);
    let charged = sandbox.authorize(&req).await.unwrap();
    assert_eq!(charged.status, IntentStatus::Captured);
    assert_eq!(charged.amount_captured, 1_000);
    assert_eq!(sandbox.capture_count(req.intent_id).await, 1);
    let events = sandbox.sent_events();
    assert_eq!(of_type(&events, "payment_intent.captured").len(), 1);
    assert!(of_type(&events, "payment_intent.authorized").is_empty());

    let first_key = key();
    let first = sandbox
        .refund(&first_key, req.intent_id, 600)
        .await
        .unwrap();
    assert!(first.provider_id.starts_with("re_"));
    assert_eq!((first.amount, first.currency.as_str()), (600, "EUR"));
    assert_eq!(
        sandbox
            .refund(&first_key, req.intent_id, 600)
            .await
            .unwrap(),
        first
    );
    let too_much = invalid(sandbox.refund(&key(), req.intent_id, 401).await);
    assert!(too_much.contains("400"), "{too_much}");
    sandbox.refund(&key(), req.intent_id, 400).await.unwrap();
    invalid(sandbox.refund(&key(), req.intent_id, 1).await);

    let events = sandbox.sent_events();
    let refunds = of_type(&events, "charge.refunded");
    assert_eq!(refunds.len(), 2);
    assert!(
        refunds
            .iter()
            .all(|e| e.data.rentify_intent_id == Some(req.intent_id)
                && e.data.provider_intent_id.as_deref()
                    == Some(charged.provider_intent_id.as_str()))
    );
    assert_eq!(
        refunds.iter().map(|e| e.data.amount).collect::<Vec<_>>(),
        [600, 400]
    );

    // Only a captured intent can be refunded.
    let held = request(&pm, 1_000, false);
    sandbox.authorize(&held).await.unwrap();
    invalid(sandbox.refund(&key(), held.intent_id, 100).await);
}

// ---------------------------------------------------------------------------
// Payouts and records

#[tokio::test]
async fn payouts_settle_by_webhook() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig::default()).await;
    let ok = sandbox.create_payout_destination("btok_ok").await.unwrap();
    let closed = sandbox
        .create_payout_destination("btok_fail")
        .await
        .unwrap();

    let paid_key = key();
    let paid = sandbox
        .payout(&paid_key, &ok.provider_account_id, 25_000, "EUR")
        .await
        .unwrap();
    assert!(paid.provider_id.starts_with("po_"));
    assert_eq!(
        sandbox
            .payout(&paid_key, &ok.provider_account_id, 25_000, "EUR")
            .await
            .unwrap(),
        paid
    );
    invalid(
        sandbox
            .payout(&paid_key, &ok.provider_account_id, 1, "EUR")
            .await,
    );
    let failed_key = key();
    let failed = sandbox
        .payout(&failed_key, &closed.provider_account_id, 900, "EUR")
        .await
        .unwrap();
    invalid(sandbox.payout(&key(), "ba_unknown", 900, "EUR").await);
    invalid(
        sandbox
            .payout(&key(), &ok.provider_account_id, 0, "EUR")
            .await,
    );

    let events: Vec<_> = listener
        .wait_for(2)
        .await
        .into_iter()
        .map(|h| h.event)
        .collect();
    let paid_event = of_type(&events, "payout.paid");
    assert_eq!(paid_event.len(), 1, "{events:?}");
    assert_eq!(
        paid_event[0].data.payout_reference.as_deref(),
        Some(paid_key.as_str())
    );
    assert_eq!(
        paid_event[0].data.provider_payout_id.as_deref(),
        Some(paid.provider_id.as_str())
    );
    assert_eq!(paid_event[0].data.amount, 25_000);
    let failed_event = of_type(&events, "payout.failed");
    assert_eq!(failed_event.len(), 1);
    assert_eq!(
        failed_event[0].data.payout_reference.as_deref(),
        Some(failed_key.as_str())
    );
    assert_eq!(
        failed_event[0].data.provider_payout_id.as_deref(),
        Some(failed.provider_id.as_str())
    );
    assert_eq!(
        failed_event[0].data.failure_code.as_deref(),
        Some("account_closed")
    );
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(listener.events().len(), 2, "settled once");
}

#[tokio::test]
async fn records_list_the_days_money_movements() {
    // A listener, so that `wait_idle` means "the payouts have settled".
    let (sandbox, _listener) = sandbox_with_listener(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    let held = request(&pm, 3_000, false);
    sandbox.authorize(&held).await.unwrap();
    sandbox
        .capture(&key(), held.intent_id, 3_000)
        .await
        .unwrap();
    let refund = sandbox.refund(&key(), held.intent_id, 1_000).await.unwrap();
    let charge = request(&pm, 500, true);
    sandbox.authorize(&charge).await.unwrap();
    let voided = request(&pm, 800, false);
    sandbox.authorize(&voided).await.unwrap();
    sandbox.void(&key(), voided.intent_id).await.unwrap();
    let bank = sandbox.create_payout_destination("btok_ok").await.unwrap();
    let payout_key = key();
    let payout = sandbox
        .payout(&payout_key, &bank.provider_account_id, 2_000, "EUR")
        .await
        .unwrap();
    let closed = sandbox
        .create_payout_destination("btok_fail")
        .await
        .unwrap();
    let bounced = sandbox
        .payout(&key(), &closed.provider_account_id, 2_000, "EUR")
        .await
        .unwrap();
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);

    let today = Utc::now().date_naive();
    let records = sandbox.records(today).await.unwrap();
    let mine = |intent: Uuid| {
        records
            .iter()
            .filter(|r| r.intent_id == Some(intent))
            .map(|r| (r.kind.as_str(), r.amount))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mine(held.intent_id),
        [("capture", 3_000), ("refund", 1_000)]
    );
    assert_eq!(mine(charge.intent_id), [("capture", 500)]);
    assert!(mine(voided.intent_id).is_empty());
    let refund_record = records
        .iter()
        .find(|r| r.provider_id == refund.provider_id)
        .unwrap();
    assert!(
        refund_record
            .provider_intent_id
            .as_deref()
            .unwrap()
            .starts_with("pi_")
    );
    let payout_record = records
        .iter()
        .find(|r| r.provider_id == payout.provider_id)
        .unwrap();
    assert_eq!(payout_record.kind, "payout");
    assert_eq!(
        payout_record.reference.as_deref(),
        Some(payout_key.as_str())
    );
    assert_eq!(payout_record.intent_id, None);
    assert!(
        records.iter().all(|r| r.provider_id != bounced.provider_id),
        "a failed payout moved no money"
    );
    assert!(records.iter().all(|r| r.at.date_naive() == today));

    let yesterday = today.pred_opt().unwrap();
    assert!(
        sandbox
            .records(yesterday)
            .await
            .unwrap()
            .iter()
            .all(|r| r.provider_id != payout.provider_id)
    );
}

// ---------------------------------------------------------------------------
// Webhook delivery

#[tokio::test]
async fn webhooks_are_signed_json_posts() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 4_200, false);
    sandbox.authorize(&req).await.unwrap();
    sandbox.capture(&key(), req.intent_id, 4_200).await.unwrap();
    let hits = listener.wait_for(2).await;
    assert!(hits.iter().all(|h| h.signature_ok && h.json), "{hits:?}");
    let mut received: Vec<_> = hits.into_iter().map(|h| h.event).collect();
    let mut sent = sandbox.sent_events();
    received.sort_by(|a, b| a.id.cmp(&b.id));
    sent.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(received, sent);
    assert!(received.iter().all(|e| e.id.starts_with("evt_")));
}

#[tokio::test]
async fn events_wait_for_a_url() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    assert!(!sandbox.wait_idle(Duration::from_millis(200)).await);
    let (listener, url) = listen(0).await;
    sandbox.set_webhook_url(url);
    let hits = listener.wait_for(1).await;
    assert_eq!(hits[0].event.event_type, "payment_intent.authorized");
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_refused_webhook_is_retried_with_backoff() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let (listener, url) = listen(3).await;
    sandbox.set_webhook_url(url);
    let pm = method(&sandbox, "tok_visa").await;
    let started = Instant::now();
    sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    let hits = listener.wait_for(1).await;
    // 100 + 200 + 400 ms of back-off before the fourth attempt.
    assert!(
        hits[0].at - started >= Duration::from_millis(700),
        "{:?}",
        hits[0].at - started
    );
    assert_eq!(listener.requests.load(Ordering::SeqCst), 4);
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(listener.hits().len(), 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_until_it_answers() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    // A port nobody listens on: connection refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/webhooks", closed.local_addr().unwrap());
    drop(closed);
    sandbox.set_webhook_url(dead_url);
    let pm = method(&sandbox, "tok_visa").await;
    sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (listener, url) = listen(0).await;
    sandbox.set_webhook_url(url);
    listener.wait_for(1).await;
}

#[tokio::test]
async fn duplicate_percent_100_delivers_every_event_twice() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig {
        duplicate_percent: 100,
        ..SandboxConfig::default()
    })
    .await;
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 100, false);
    sandbox.authorize(&req).await.unwrap();
    sandbox.void(&key(), req.intent_id).await.unwrap();
    listener.wait_for(4).await;
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
    let events = listener.events();
    assert_eq!(events.len(), 4);
    let sent = sandbox.sent_events();
    assert_eq!(sent.len(), 2);
    for event in &sent {
        assert_eq!(events.iter().filter(|e| *e == event).count(), 2);
    }
}

#[tokio::test]
async fn delayed_webhooks_all_arrive() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig {
        max_delay_ms: 150,
        ..SandboxConfig::default()
    })
    .await;
    let pm = method(&sandbox, "tok_visa").await;
    for _ in 0..6 {
        sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    }
    listener.wait_for(6).await;
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(listener.events().len(), 6);
}

#[tokio::test]
async fn paused_webhooks_are_held_until_resumed() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    sandbox.pause_webhooks();
    for _ in 0..3 {
        sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    }
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(listener.hits().is_empty());
    sandbox.resume_webhooks();
    listener.wait_for(3).await;
    assert_eq!(listener.events(), sandbox.sent_events(), "in order");

    sandbox.pause_webhooks();
    for _ in 0..5 {
        sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    }
    assert!(sandbox.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(listener.hits().len(), 3);
    sandbox.resume_webhooks_shuffled();
    listener.wait_for(8).await;
    let mut received: Vec<_> = listener.events().into_iter().map(|e| e.id).collect();
    let mut sent: Vec<_> = sandbox.sent_events().into_iter().map(|e| e.id).collect();
    received.sort();
    sent.sort();
    assert_eq!(received, sent);
}

#[tokio::test]
async fn past_events_can_be_delivered_again() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    sandbox.authorize(&request(&pm, 100, false)).await.unwrap();
    listener.wait_for(1).await;
    let event = sandbox.sent_events().remove(0);
    assert!(sandbox.deliver_again(&event.id, 3).await);
    assert_eq!(listener.hits().len(), 4);
    assert!(listener.events().iter().all(|e| *e == event));
    assert!(!sandbox.deliver_again("evt_unknown", 1).await);
    sandbox.redeliver_all(2).await;
    assert_eq!(listener.hits().len(), 6);
}

// ---------------------------------------------------------------------------
// Faults and chaos

#[tokio::test]
async fn injected_faults_hit_the_next_calls_in_order() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig::default()).await;
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 900, false);

    // Unavailable: no effect at all.
    sandbox.inject(Fault::Unavailable);
    assert!(matches!(
        sandbox.authorize(&req).await,
        Err(GatewayError::Unavailable(_))
    ));
    assert!(sandbox.sent_events().is_empty());
    sandbox.authorize(&req).await.unwrap();

    // LostResponse: applied (and announced), answer lost; a retry with the
    // same key gets the answer.
    let capture_key = key();
    sandbox.inject(Fault::LostResponse);
    sandbox.inject(Fault::Unavailable);
    assert_eq!(
        sandbox.capture(&capture_key, req.intent_id, 900).await,
        Err(GatewayError::Unavailable("timeout".into()))
    );
    assert_eq!(sandbox.capture_count(req.intent_id).await, 1);
    assert!(matches!(
        sandbox.capture(&capture_key, req.intent_id, 900).await,
        Err(GatewayError::Unavailable(_))
    ));
    let state = sandbox
        .capture(&capture_key, req.intent_id, 900)
        .await
        .unwrap();
    assert_eq!(state.status, IntentStatus::Captured);
    assert_eq!(sandbox.capture_count(req.intent_id).await, 1);
    let hits = listener.wait_for(2).await;
    assert!(
        hits.iter()
            .any(|h| h.event.event_type == "payment_intent.captured")
    );
}

#[tokio::test]
async fn a_slow_answer_trips_the_guard_but_the_call_still_happens() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let guarded = Guarded::new(
        sandbox.clone(),
        BreakerConfig {
            call_timeout: Duration::from_millis(200),
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        },
    );
    let pm = method(&sandbox, "tok_visa").await;
    let req = request(&pm, 300, false);
    guarded.authorize(&req).await.unwrap();
    sandbox.inject(Fault::Slow(Duration::from_millis(600)));
    assert_eq!(
        guarded.void(&key(), req.intent_id).await,
        Err(GatewayError::Unavailable("timeout".into()))
    );
    let state = guarded.void(&key(), req.intent_id).await.unwrap();
    assert_eq!(state.status, IntentStatus::Voided);
    assert_eq!(
        of_type(&sandbox.sent_events(), "payment_intent.voided").len(),
        1
    );

    // Two outages in a row open the circuit; the sandbox is not called.
    sandbox.inject(Fault::Unavailable);
    sandbox.inject(Fault::Unavailable);
    sandbox.inject(Fault::LostResponse);
    for _ in 0..2 {
        assert!(guarded.create_method("tok_visa").await.is_err());
    }
    assert!(guarded.is_open());
    assert_eq!(
        guarded.create_method("tok_visa").await,
        Err(GatewayError::Unavailable("circuit open".into()))
    );
}

#[tokio::test]
async fn failure_percent_100_fails_every_call_without_effect() {
    let sandbox = sandbox(SandboxConfig {
        failure_percent: 100,
        ..SandboxConfig::default()
    })
    .await;
    for _ in 0..3 {
        assert!(matches!(
            sandbox.create_method("tok_visa").await,
            Err(GatewayError::Unavailable(_))
        ));
    }
    let req = request("pm_whatever", 100, false);
    assert!(matches!(
        sandbox.authorize(&req).await,
        Err(GatewayError::Unavailable(_))
    ));
    assert!(sandbox.sent_events().is_empty());
}

#[tokio::test]
async fn timeout_percent_100_applies_every_call_and_loses_the_answer() {
    let (sandbox, listener) = sandbox_with_listener(SandboxConfig {
        timeout_percent: 100,
        ..SandboxConfig::default()
    })
    .await;
    assert!(matches!(
        sandbox.create_method("tok_visa").await,
        Err(GatewayError::Unavailable(reason)) if reason == "timeout"
    ));
    // The method exists, but its id was lost; one made by a healthy call
    // is needed to go on, so look it up through a second sandbox.
    let other = Sandbox::new(db().await, SECRET.to_vec(), SandboxConfig::default());
    let pm = other
        .create_method("tok_visa")
        .await
        .unwrap()
        .provider_method_id;
    let req = request(&pm, 100, false);
    assert_eq!(
        sandbox.authorize(&req).await,
        Err(GatewayError::Unavailable("timeout".into()))
    );
    // The authorization happened: the webhook says so, and a retry (here
    // through the healthy sandbox, same processor) sees it.
    let hits = listener.wait_for(1).await;
    assert_eq!(hits[0].event.event_type, "payment_intent.authorized");
    assert_eq!(hits[0].event.data.rentify_intent_id, Some(req.intent_id));
    let state = other.authorize(&req).await.unwrap();
    assert_eq!(state.status, IntentStatus::Authorized);
    assert!(of_type(&other.sent_events(), "payment_intent.authorized").is_empty());
}

#[tokio::test]
async fn two_sandboxes_share_one_processor() {
    let first = sandbox(SandboxConfig::default()).await;
    let second = sandbox(SandboxConfig::default()).await;
    let pm = method(&first, "tok_visa").await;
    let req = request(&pm, 1_000, false);
    first.authorize(&req).await.unwrap();
    let state = second.capture(&key(), req.intent_id, 1_000).await.unwrap();
    assert_eq!(state.status, IntentStatus::Captured);
    assert_eq!(first.capture_count(req.intent_id).await, 1);
}
