//! A payment's life at the gateway, mirrored in the ledger.
//!
//! The gateway's answer to a call and its webhooks race: a capture may be
//! reported by the call and again by `payment_intent.captured`, in either
//! order, several times. Every effect here is therefore applied under the
//! intent's row lock and only from the status it expects, so the second
//! report finds nothing to do. Statuses only move forward:
//! `authorizing → authorized → captured`, or to `voided`, `failed` or
//! `expired` (we stopped waiting; see the booking saga).
//!
//! Gateway calls are made outside any transaction (a slow gateway must not
//! hold row locks), with idempotency keys derived from the intent, so a
//! retry after a timeout never charges twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    Payments,
    error::{PaymentError, PaymentResult},
    gateway::PaymentGateway,
    gateway::{AuthorizeRequest, IntentState, IntentStatus},
    ledger::{self, AccountKind, NewTransfer, Phase, TransferKind},
};

/// A row of `payment_intents`.
#[derive(Clone, Debug, sqlx::FromRow, Serialize)]
pub struct Intent {
    pub id: Uuid,
    pub purpose: String,
    pub booking_id: Option<Uuid>,
    pub user_id: Uuid,
    pub payment_method_id: Option<Uuid>,
    pub provider_intent_id: Option<String>,
    pub currency: String,
    pub amount: i64,
    pub deposit: i64,
    pub status: String,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub charge_transfer_id: Option<Uuid>,
    pub deposit_transfer_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "id, purpose, booking_id, user_id, payment_method_id, provider_intent_id,
    currency::text AS currency, amount, deposit, status, amount_captured, amount_refunded,
    failure_code, failure_message, charge_transfer_id, deposit_transfer_id, created_at, updated_at";

impl Intent {
    /// The part of the amount that is not the deposit.
    pub fn charge(&self) -> i64 {
        self.amount - self.deposit
    }
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> PaymentResult<Intent> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payment_intents WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(PaymentError::NotFound)
}

/// Locks the intent for the rest of the caller's transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> PaymentResult<Intent> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payment_intents WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(PaymentError::NotFound)
}

/// The intent of a booking, if it has one.
pub async fn of_booking(
    conn: &mut PgConnection,
    booking_id: Uuid,
) -> PaymentResult<Option<Intent>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payment_intents WHERE booking_id = $1"
    ))
    .bind(booking_id)
    .fetch_optional(conn)
    .await?)
}

/// Opens an intent row (`authorizing`) in the caller's transaction.
pub struct NewIntent<'a> {
    pub id: Uuid,
    pub purpose: &'a str,
    pub booking_id: Option<Uuid>,
    pub user_id: Uuid,
    pub payment_method_id: Uuid,
    pub currency: &'a str,
    pub amount: i64,
    pub deposit: i64,
}

pub async fn open(conn: &mut PgConnection, new: NewIntent<'_>) -> PaymentResult<()> {
    sqlx::query(
        "INSERT INTO payment_intents (id, purpose, booking_id, user_id, payment_method_id,
                                      currency, amount, deposit, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'authorizing')",
    )
    .bind(new.id)
    .bind(new.purpose)
    .bind(new.booking_id)
    .bind(new.user_id)
    .bind(new.payment_method_id)
    .bind(new.currency)
    .bind(new.amount)
    .bind(new.deposit)
    .execute(conn)
    .await?;
    Ok(())
}

/// Asks the gateway to authorize (or, with `capture`, charge) an open
/// intent. The answer is returned, not applied: the caller applies it in
/// its own transaction (the booking saga locks the booking first).
pub async fn request_authorization(
    p: &Payments,
    intent_id: Uuid,
    capture: bool,
    description: &str,
) -> PaymentResult<Result<IntentState, PaymentError>> {
    let mut conn = p.db().acquire().await?;
    let intent = get(&mut conn, intent_id).await?;
    let method: String =
        sqlx::query_scalar("SELECT provider_method_id FROM payment_methods WHERE id = $1")
            .bind(intent.payment_method_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(PaymentError::MethodRequired)?;
    drop(conn);
    let answer = p
        .gateway()
        .authorize(&AuthorizeRequest {
            intent_id,
            provider_method_id: method,
            amount: intent.amount,
            currency: intent.currency.clone(),
            capture,
            description: description.to_owned(),
        })
        .await;
    Ok(answer.map_err(PaymentError::from))
}

/// What an authorization call's answer decides: `Some(Ok)` authorized (or
/// captured), `Some(Err((code, message)))` refused, `None` unknown (the
/// gateway did not answer: a webhook, a retry or the timer decides).
pub fn authorization_outcome(
    answer: &Result<IntentState, PaymentError>,
) -> Option<Result<(), (String, String)>> {
    match answer {
        Ok(state) => match state.status {
            IntentStatus::Authorized | IntentStatus::Captured => Some(Ok(())),
            // A retry of an authorization the gateway declined before.
            IntentStatus::Failed => Some(Err((
                "card_declined".to_owned(),
                "the card was declined".to_owned(),
            ))),
            IntentStatus::Voided => Some(Err((
                "authorization_voided".to_owned(),
                "the authorization was released".to_owned(),
            ))),
        },
        Err(PaymentError::Declined { code, message }) => Some(Err((code.clone(), message.clone()))),
        Err(PaymentError::Refused(message)) => {
            Some(Err(("payment_refused".to_owned(), message.clone())))
        }
        Err(_) => None,
    }
}

/// A transfer between the card (the gateway's clearing account) and
/// `account` about `intent`: `into_account` moves `amount` from the card to
/// the account (a charge, a hold), otherwise back to the card (a refund).
#[allow(clippy::too_many_arguments)]
async fn card_transfer(
    p: &Payments,
    conn: &mut PgConnection,
    intent: &Intent,
    kind: TransferKind,
    phase: Phase,
    account: Uuid,
    amount: i64,
    into_account: bool,
    provider_ref: Option<&str>,
    description: &str,
) -> PaymentResult<Uuid> {
    let clearing = p
        .accounts()
        .house(AccountKind::GatewayClearing, &intent.currency)
        .await?;
    let (from, to) = if into_account {
        (clearing, account)
    } else {
        (account, clearing)
    };
    let mut t = NewTransfer::between(kind, phase, &intent.currency, from, to, amount)
        .intent(intent.id)
        .user(intent.user_id)
        .provider_ref(provider_ref)
        .describe(description);
    t.booking_id = intent.booking_id;
    Ok(ledger::transfer(conn, t).await?)
}

/// Records a successful authorization of a booking's intent: the charge
/// and the deposit become pending transfers from the card (the hold), and
/// the intent `authorized`. From `authorizing` or `expired` (a late
/// success the booking could still take); `false` if already applied.
pub async fn record_authorized(
    p: &Payments,
    conn: &mut PgConnection,
    intent: &Intent,
    provider_intent_id: Option<&str>,
) -> PaymentResult<bool> {
    if !matches!(intent.status.as_str(), "authorizing" | "expired") {
        return Ok(false);
    }
    let mut charge = None;
    if intent.charge() > 0 {
        let escrow = p
            .accounts()
            .house(AccountKind::Escrow, &intent.currency)
            .await?;
        charge = Some(
            card_transfer(
                p,
                conn,
                intent,
                TransferKind::Charge,
                Phase::Pending,
                escrow,
                intent.charge(),
                true,
                provider_intent_id,
                "authorization hold",
            )
            .await?,
        );
    }
    let mut deposit = None;
    if intent.deposit > 0 {
        let held = p
            .accounts()
            .house(AccountKind::DepositsHeld, &intent.currency)
            .await?;
        deposit = Some(
            card_transfer(
                p,
                conn,
                intent,
                TransferKind::DepositHold,
                Phase::Pending,
                held,
                intent.deposit,
                true,
                provider_intent_id,
                "deposit hold",
            )
            .await?,
        );
    }
    sqlx::query(
        "UPDATE payment_intents SET status = 'authorized',
                provider_intent_id = COALESCE($2, provider_intent_id),
                charge_transfer_id = $3, deposit_transfer_id = $4, updated_at = now()
          WHERE id = $1",
    )
    .bind(intent.id)
    .bind(provider_intent_id)
    .bind(charge)
    .bind(deposit)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Records a declined authorization; `false` if the intent was decided.
pub async fn record_failed(
    conn: &mut PgConnection,
    intent: &Intent,
    code: &str,
    message: &str,
) -> PaymentResult<bool> {
    if !matches!(intent.status.as_str(), "authorizing" | "expired") {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE payment_intents SET status = 'failed', failure_code = $2, failure_message = $3,
                updated_at = now()
          WHERE id = $1",
    )
    .bind(intent.id)
    .bind(code)
    .bind(message)
    .execute(conn)
    .await?;
    Ok(true)
}

/// The payment timer gave up on an unanswered authorization: a late
/// success will be recovered or voided. `false` if it was answered.
pub async fn record_expired(conn: &mut PgConnection, intent: &Intent) -> PaymentResult<bool> {
    if intent.status != "authorizing" {
        return Ok(false);
    }
    sqlx::query("UPDATE payment_intents SET status = 'expired', updated_at = now() WHERE id = $1")
        .bind(intent.id)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Records a released authorization: its pending transfers are voided.
pub async fn record_voided(conn: &mut PgConnection, intent: &Intent) -> PaymentResult<bool> {
    if !matches!(
        intent.status.as_str(),
        "authorizing" | "authorized" | "expired" | "voiding"
    ) {
        return Ok(false);
    }
    for transfer in [intent.charge_transfer_id, intent.deposit_transfer_id]
        .into_iter()
        .flatten()
    {
        ledger::void(conn, transfer).await?;
    }
    sqlx::query("UPDATE payment_intents SET status = 'voided', updated_at = now() WHERE id = $1")
        .bind(intent.id)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Records a capture of `amount`. A booking's hold is posted (all of it;
/// a partial capture is [`record_partial_capture`]); a wallet deposit is
/// credited to the wallet. `false` if already captured.
pub async fn record_captured(
    p: &Payments,
    conn: &mut PgConnection,
    intent: &Intent,
    provider_intent_id: Option<&str>,
    amount: i64,
) -> PaymentResult<bool> {
    match (intent.purpose.as_str(), intent.status.as_str()) {
        ("booking", "authorized") => {
            for transfer in [intent.charge_transfer_id, intent.deposit_transfer_id]
                .into_iter()
                .flatten()
            {
                ledger::post(conn, transfer).await?;
            }
        }
        ("wallet_deposit", "authorizing" | "authorized" | "expired") => {
            let wallet = p
                .accounts()
                .wallet(intent.user_id, &intent.currency)
                .await?;
            card_transfer(
                p,
                conn,
                intent,
                TransferKind::WalletDeposit,
                Phase::Posted,
                wallet,
                amount,
                true,
                provider_intent_id.or(intent.provider_intent_id.as_deref()),
                "wallet top-up",
            )
            .await?;
        }
        _ => return Ok(false),
    }
    sqlx::query(
        "UPDATE payment_intents SET status = 'captured', amount_captured = $2,
                provider_intent_id = COALESCE($3, provider_intent_id), updated_at = now()
          WHERE id = $1",
    )
    .bind(intent.id)
    .bind(amount)
    .bind(provider_intent_id)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Records a partial capture of a booking's hold (a cancellation keeps
/// part of the price): the hold is voided and `amount` charged for good.
pub async fn record_partial_capture(
    p: &Payments,
    conn: &mut PgConnection,
    intent: &Intent,
    amount: i64,
) -> PaymentResult<bool> {
    if intent.status != "authorized" {
        return Ok(false);
    }
    for transfer in [intent.charge_transfer_id, intent.deposit_transfer_id]
        .into_iter()
        .flatten()
    {
        ledger::void(conn, transfer).await?;
    }
    let escrow = p
        .accounts()
        .house(AccountKind::Escrow, &intent.currency)
        .await?;
    let charge = card_transfer(
        p,
        conn,
        intent,
        TransferKind::Charge,
        Phase::Posted,
        escrow,
        amount,
        true,
        intent.provider_intent_id.as_deref(),
        "cancellation fee captured",
    )
    .await?;
    sqlx::query(
        "UPDATE payment_intents SET status = 'captured', amount_captured = $2,
                charge_transfer_id = $3, deposit_transfer_id = NULL, updated_at = now()
          WHERE id = $1",
    )
    .bind(intent.id)
    .bind(amount)
    .bind(charge)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Captures a booking's authorized intent in full, once: the gateway call
/// (idempotent on `capture:<intent>`), then the ledger under the intent's
/// lock. Twenty concurrent calls make one capture at the gateway and one
/// posting in the ledger.
pub async fn capture(p: &Payments, intent_id: Uuid) -> PaymentResult<Intent> {
    let intent = get(&mut *p.db().acquire().await?, intent_id).await?;
    match intent.status.as_str() {
        "captured" => return Ok(intent),
        "authorized" => {}
        other => return Err(PaymentError::InvalidState(other.to_owned())),
    }
    let state = p
        .gateway()
        .capture(&format!("capture:{intent_id}"), intent_id, intent.amount)
        .await?;
    apply_state(p, intent_id, &state).await
}

/// Voids an intent's authorization at the gateway and in the ledger.
/// Without an answer from the gateway (`Unavailable`), the ledger is left
/// alone and the error returned, for the caller's retry.
pub async fn void(p: &Payments, intent_id: Uuid) -> PaymentResult<Intent> {
    let state = p
        .gateway()
        .void(&format!("void:{intent_id}"), intent_id)
        .await;
    match state {
        Ok(state) => apply_state(p, intent_id, &state).await,
        // Never authorized at the gateway (declined, or never reached it).
        Err(crate::gateway::GatewayError::Invalid(_)) => {
            let mut tx = p.db().begin().await?;
            let intent = lock(&mut tx, intent_id).await?;
            if matches!(
                intent.status.as_str(),
                "authorizing" | "expired" | "voiding"
            ) {
                record_voided(&mut tx, &intent).await?;
            }
            tx.commit().await?;
            get(&mut *p.db().acquire().await?, intent_id).await
        }
        Err(error) => Err(error.into()),
    }
}

/// Applies what the gateway says an intent is now (a call's answer).
pub async fn apply_state(
    p: &Payments,
    intent_id: Uuid,
    state: &IntentState,
) -> PaymentResult<Intent> {
    let mut tx = p.db().begin().await?;
    let intent = lock(&mut tx, intent_id).await?;
    match state.status {
        IntentStatus::Captured => {
            if intent.status == "authorized" && state.amount_captured < intent.amount {
                record_partial_capture(p, &mut tx, &intent, state.amount_captured).await?;
            } else {
                record_captured(
                    p,
                    &mut tx,
                    &intent,
                    Some(&state.provider_intent_id),
                    state.amount_captured,
                )
                .await?;
            }
        }
        IntentStatus::Voided => {
            record_voided(&mut tx, &intent).await?;
        }
        IntentStatus::Authorized | IntentStatus::Failed => {}
    }
    tx.commit().await?;
    get(&mut *p.db().acquire().await?, intent_id).await
}

/// Refunds `amount` of a captured booking intent to the card, from escrow
/// (or, after settlement, from what the caller moved back into escrow).
/// Idempotent on `key`: the ledger records the gateway's refund id once.
pub async fn refund(
    p: &Payments,
    intent_id: Uuid,
    key: &str,
    amount: i64,
    kind: TransferKind,
    from: AccountKind,
) -> PaymentResult<()> {
    if amount <= 0 {
        return Ok(());
    }
    let op = p.gateway().refund(key, intent_id, amount).await?;
    let mut tx = p.db().begin().await?;
    let intent = lock(&mut tx, intent_id).await?;
    let seen: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM ledger_transfers WHERE intent_id = $1 AND provider_ref = $2)",
    )
    .bind(intent_id)
    .bind(&op.provider_id)
    .fetch_one(&mut *tx)
    .await?;
    if !seen {
        let source = p.accounts().house(from, &intent.currency).await?;
        card_transfer(
            p,
            &mut tx,
            &intent,
            kind,
            Phase::Posted,
            source,
            op.amount,
            false,
            Some(&op.provider_id),
            "refund to card",
        )
        .await?;
        sqlx::query(
            "UPDATE payment_intents SET amount_refunded = amount_refunded + $2, updated_at = now()
              WHERE id = $1",
        )
        .bind(intent.id)
        .bind(op.amount)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
