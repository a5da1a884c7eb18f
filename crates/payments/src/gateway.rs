//! The payment gateway: what Rentify asks of a card processor, as a trait,
//! so the sandbox (`crate::sandbox`) and a real adapter (Stripe) are
//! interchangeable. Every call that moves money takes an idempotency key:
//! the processor performs a key once and answers a retry with the first
//! result, which is what makes retries after a timeout safe.
//!
//! Callers never use a gateway directly: [`crate::breaker::Guarded`] wraps
//! it with a timeout and a circuit breaker and turns an outage into
//! [`GatewayError::Unavailable`].

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A card as the processor reports it after tokenization: never the
/// number, only what may be shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The processor's id of the stored method (`pm_…`).
    pub provider_method_id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
}

/// A payout destination (bank account) as the processor reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutDestination {
    /// The processor's id (`ba_…`).
    pub provider_account_id: String,
    pub bank_name: String,
    pub last4: String,
}

/// Where an intent is at the processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Authorized, funds held on the card, not yet captured.
    Authorized,
    /// Captured (in full or in part); refunds may follow.
    Captured,
    /// The authorization was released without capture.
    Voided,
    /// Declined at authorization.
    Failed,
}

/// The processor's view of an intent after a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentState {
    /// The processor's id (`pi_…`).
    pub provider_intent_id: String,
    pub status: IntentStatus,
    pub amount: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub currency: String,
}

/// `authorize`'s request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// Rentify's id of the intent: the idempotency key of the
    /// authorization, and echoed as `rentify_intent_id` in every webhook
    /// about this intent (so a webhook can be matched even when the call
    /// that created the intent timed out).
    pub intent_id: Uuid,
    pub provider_method_id: String,
    pub amount: i64,
    pub currency: String,
    /// Capture at once (a wallet deposit) instead of holding.
    pub capture: bool,
    pub description: String,
}

/// A refund or payout as the processor reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The processor's id (`re_…`, `po_…`).
    pub provider_id: String,
    pub amount: i64,
    pub currency: String,
}

/// One money movement in the processor's books, for reconciliation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRecord {
    /// `capture`, `refund` or `payout`.
    pub kind: String,
    pub provider_id: String,
    /// The intent a capture or refund belongs to (the processor's id).
    pub provider_intent_id: Option<String>,
    /// Rentify's intent id (the metadata echoed back), when there is one.
    pub intent_id: Option<Uuid>,
    /// For a payout, the idempotency key Rentify gave it (its payout id).
    pub reference: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

/// Why a gateway call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The processor refused: a card decline or a business rule
    /// (`card_declined`, `insufficient_funds`, `amount_too_large`, …).
    /// Retrying the same request gives the same answer.
    #[error("declined by the payment provider: {code}")]
    Declined { code: String, message: String },
    /// The request is malformed or refers to something unknown (a bad
    /// token, an unknown intent, capturing a voided intent).
    #[error("refused by the payment provider: {0}")]
    Invalid(String),
    /// Timeout, 5xx, or the circuit is open: the outcome is unknown, and a
    /// retry with the same idempotency key is safe.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// A card processor.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Turns a client-side token (`tok_visa`, …) into a stored method.
    async fn create_method(&self, token: &str) -> Result<Card, GatewayError>;

    /// Authorizes (`capture: false`) or charges (`capture: true`) a method.
    /// Idempotent on `req.intent_id`.
    async fn authorize(&self, req: &AuthorizeRequest) -> Result<IntentState, GatewayError>;

    /// Captures `amount` (≤ what is authorized) of an authorized intent.
    /// Idempotent on `idempotency_key`; capturing an already captured
    /// intent answers its state without a second capture.
    async fn capture(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<IntentState, GatewayError>;

    /// Releases an authorization. Idempotent: voiding a voided intent is
    /// no error.
    async fn void(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
    ) -> Result<IntentState, GatewayError>;

    /// Refunds `amount` of a captured intent. Idempotent on
    /// `idempotency_key`.
    async fn refund(
        &self,
        idempotency_key: &str,
        intent_id: Uuid,
        amount: i64,
    ) -> Result<Operation, GatewayError>;

    /// Registers a bank account from a token (`btok_…`).
    async fn create_payout_destination(
        &self,
        token: &str,
    ) -> Result<PayoutDestination, GatewayError>;

    /// Sends money to a bank account. Idempotent on `idempotency_key`; the
    /// outcome arrives as a `payout.paid` or `payout.failed` webhook.
    async fn payout(
        &self,
        idempotency_key: &str,
        provider_account_id: &str,
        amount: i64,
        currency: &str,
    ) -> Result<Operation, GatewayError>;

    /// Every capture, refund and payout the processor made on `day` (UTC).
    async fn records(&self, day: NaiveDate) -> Result<Vec<GatewayRecord>, GatewayError>;
}

/// A webhook event as the processor sends it to `POST /v1/webhooks/payments`
/// (signed with `Rentify-Signature`, see `rentify_platform::webhook_signature`).
///
/// Types: `payment_intent.authorized`, `payment_intent.authorization_failed`,
/// `payment_intent.captured`, `payment_intent.voided`, `charge.refunded`,
/// `payout.paid`, `payout.failed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookEvent {
    /// Unique per event (`evt_…`); a redelivery repeats it.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub data: WebhookData,
}

/// What a webhook event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookData {
    /// The processor's intent id (intent events, refunds).
    #[serde(default)]
    pub provider_intent_id: Option<String>,
    /// Rentify's intent id, echoed from the authorization.
    #[serde(default)]
    pub rentify_intent_id: Option<Uuid>,
    /// The processor's payout id (payout events).
    #[serde(default)]
    pub provider_payout_id: Option<String>,
    /// The idempotency key Rentify gave the payout (Rentify's payout id).
    #[serde(default)]
    pub payout_reference: Option<String>,
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub currency: String,
    /// For a failure: the processor's reason (`card_declined`, …).
    #[serde(default)]
    pub failure_code: Option<String>,
    #[serde(default)]
    pub failure_message: Option<String>,
}
