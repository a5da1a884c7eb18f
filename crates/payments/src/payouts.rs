//! Payouts: owners' earnings (daily) and approved withdrawals sent to the
//! user's bank account.
//!
//! A payout is two steps with the gateway call between them, because a
//! gateway call never runs inside a transaction: first the money leaves the
//! wallet for `payouts_pending` together with the `payouts` row (`pending`);
//! after the commit the gateway is asked, with the payout id as idempotency
//! key, so asking again after a timeout or a crash never pays twice. The
//! bank's answer comes later by webhook (`payout.paid`: the money leaves
//! for `gateway_clearing`; `payout.failed`: it goes back to the wallet).
//! A payout only ever leaves `pending`/`in_transit` once, under its row
//! lock, so duplicated or reordered webhooks change nothing more.

use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::UserCaller,
    error::ErrorEnvelope,
    extract::{Json as JsonBody, ValidQuery},
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Payments,
    error::{PaymentError, PaymentResult},
    gateway::{GatewayError, PaymentGateway, WebhookEvent},
    ledger::{self, AccountKind, NewTransfer, Phase, TransferKind},
};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(setup_payout_account))
        .routes(routes!(list_payouts))
}

/// `POST /v1/payouts/setup`'s body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PayoutSetup {
    /// A bank-account token from the processor's client library
    /// (sandbox: `btok_ok`, or `btok_fail` whose payouts fail). Never an
    /// account number.
    #[schema(example = "btok_ok")]
    pub token: String,
}

/// Where the caller's payouts go; only what may be shown.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PayoutAccount {
    #[schema(example = "payout_account")]
    #[sqlx(skip)]
    pub object: &'static str,
    pub bank_name: String,
    pub last4: String,
    pub created_at: DateTime<Utc>,
}

/// Money sent (or being sent) to the caller's bank account.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Payout {
    pub id: Uuid,
    #[schema(example = "payout")]
    #[sqlx(skip)]
    pub object: &'static str,
    /// `earnings` (the daily payout of a wallet) or `withdrawal`.
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    /// `pending` (not yet accepted by the processor), `in_transit`, `paid`
    /// or `failed` (the money went back to the wallet).
    pub status: String,
    pub provider_payout_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A bank account number would bring Rentify into the scope of banking
/// data rules; only the processor's tokens are accepted.
fn looks_like_account_number(token: &str) -> bool {
    let compact: String = token.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    compact.chars().all(|c| c.is_ascii_alphanumeric())
        && compact.chars().filter(char::is_ascii_digit).count() >= 6
}

/// Registers the caller's bank account from a processor token, replacing
/// the previous one. Later payouts go to the new account.
#[utoipa::path(
    post, path = "/v1/payouts/setup", tag = "payments",
    security(("bearer" = [])),
    request_body = PayoutSetup,
    responses(
        (status = 200, description = "The payout account", body = PayoutAccount),
        (status = 400, description = "`validation_failed` (an account number instead of a token), `payment_refused` (unknown token)", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 503, description = "`payment_provider_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn setup_payout_account(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    JsonBody(input): JsonBody<PayoutSetup>,
) -> ApiResult<Json<PayoutAccount>> {
    let token = input.token.trim();
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::invalid_field(
            "token",
            "length",
            "1 to 200 characters",
        ));
    }
    if looks_like_account_number(token) {
        return Err(ApiError::invalid_field(
            "token",
            "raw_account_number",
            "send the bank-account token from the processor's client library, never the account number",
        ));
    }
    let destination = payments
        .gateway()
        .create_payout_destination(token)
        .await
        .map_err(PaymentError::from)?;
    let mut account: PayoutAccount = sqlx::query_as(
        "INSERT INTO payout_accounts (user_id, provider_account_id, bank_name, last4)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE
            SET provider_account_id = EXCLUDED.provider_account_id,
                bank_name = EXCLUDED.bank_name, last4 = EXCLUDED.last4,
                created_at = now(), updated_at = now()
         RETURNING bank_name, last4::text AS last4, created_at",
    )
    .bind(caller.user_id)
    .bind(&destination.provider_account_id)
    .bind(&destination.bank_name)
    .bind(&destination.last4)
    .fetch_one(payments.db())
    .await?;
    account.object = "payout_account";
    Ok(Json(account))
}

const PAYOUT_COLUMNS: &str = "id, kind, amount, currency::text AS currency, status,
    provider_payout_id, failure_code, created_at";

/// The caller's payouts, newest first.
#[utoipa::path(
    get, path = "/v1/payouts", tag = "payments",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of payouts", body = Page<Payout>),
        (status = 400, description = "`validation_failed`, `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
    )
)]
pub async fn list_payouts(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Payout>>> {
    let after = page.after::<Uuid>()?.map(|c| c.id);
    let rows: Vec<Payout> = sqlx::query_as(&format!(
        "SELECT {PAYOUT_COLUMNS} FROM payouts
          WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3"
    ))
    .bind(caller.user_id)
    .bind(after)
    .bind(page.fetch_limit())
    .fetch_all(payments.db())
    .await?;
    let page = Page::from_rows(rows, &page, |p| Cursor::new(p.id, p.id));
    Ok(Json(page.map(|p| Payout {
        object: "payout",
        ..p
    })))
}

/// Writes a `pending` payout row for money the caller's transaction has
/// just moved to `payouts_pending` (by `transfer_id`); returns its id.
pub async fn create(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: &str,
    currency: &str,
    amount: i64,
    transfer_id: Uuid,
) -> PaymentResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payouts (id, user_id, kind, currency, amount, status, transfer_id)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
    )
    .bind(id)
    .bind(user_id)
    .bind(kind)
    .bind(currency)
    .bind(amount)
    .bind(transfer_id)
    .execute(conn)
    .await?;
    Ok(id)
}

/// The daily batch: every wallet with available money whose owner has a
/// payout account is emptied into a payout, then every payout still
/// `pending` (this run's and earlier runs' left by a gateway outage) is
/// sent. Returns how many were sent. An outage is an error once the rest is
/// done, so the job retries; the same payout ids make the retry safe.
pub async fn run_daily(p: &Payments) -> anyhow::Result<usize> {
    let wallets: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT a.id, a.owner_id, a.currency::text FROM ledger_accounts a
           JOIN payout_accounts pa ON pa.user_id = a.owner_id
          WHERE a.kind = 'wallet' AND a.posted - a.pending_debits > 0
          ORDER BY a.id",
    )
    .fetch_all(p.db())
    .await?;
    for (wallet, owner, currency) in wallets {
        if let Err(error) = pay_out_wallet(p, wallet, owner, &currency).await {
            tracing::warn!(%owner, %currency, %error, "daily payout not created");
        }
    }

    let pending: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM payouts WHERE status = 'pending' ORDER BY created_at")
            .fetch_all(p.db())
            .await?;
    let mut sent = 0;
    let mut unavailable = 0;
    for id in pending {
        match send(p, id).await {
            Ok(()) => sent += 1,
            Err(PaymentError::ProviderUnavailable) => unavailable += 1,
            Err(error) => tracing::warn!(payout_id = %id, %error, "payout not sent"),
        }
    }
    if unavailable > 0 {
        anyhow::bail!(
            "the payment provider is unavailable: {unavailable} payouts stay pending for the retry"
        );
    }
    Ok(sent)
}

/// Moves a wallet's available money into a new earnings payout, in one
/// transaction. The wallet row is locked first so the amount read is the
/// amount moved, whatever withdrawals run meanwhile.
async fn pay_out_wallet(
    p: &Payments,
    wallet: Uuid,
    owner: Uuid,
    currency: &str,
) -> PaymentResult<Option<Uuid>> {
    let pending_account = p
        .accounts()
        .house(AccountKind::PayoutsPending, currency)
        .await?;
    let mut tx = p.db().begin().await?;
    let available: i64 = sqlx::query_scalar(
        "SELECT posted - pending_debits FROM ledger_accounts WHERE id = $1 FOR UPDATE",
    )
    .bind(wallet)
    .fetch_one(&mut *tx)
    .await?;
    if available <= 0 {
        return Ok(None);
    }
    let transfer = ledger::transfer(
        &mut tx,
        NewTransfer::between(
            TransferKind::Payout,
            Phase::Posted,
            currency,
            wallet,
            pending_account,
            available,
        )
        .user(owner)
        .describe("daily payout of earnings"),
    )
    .await?;
    let id = create(&mut tx, owner, "earnings", currency, available, transfer).await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// Asks the gateway to send a `pending` payout (nothing to do otherwise)
/// and marks it `in_transit`. The payout id is the idempotency key, so a
/// retry after a lost answer gets the first payout back, not a second one.
///
/// Only the bank's webhook gives money back to the wallet: a refusal here
/// (`Declined`, `Refused`) leaves the payout `pending` for an operator,
/// because an answer lost earlier may have been a success.
pub async fn send(p: &Payments, payout_id: Uuid) -> PaymentResult<()> {
    let row: Option<(String, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT o.currency::text, o.amount, o.status, a.provider_account_id
           FROM payouts o LEFT JOIN payout_accounts a ON a.user_id = o.user_id
          WHERE o.id = $1",
    )
    .bind(payout_id)
    .fetch_optional(p.db())
    .await?;
    let Some((currency, amount, status, account)) = row else {
        return Err(PaymentError::NotFound);
    };
    if status != "pending" {
        return Ok(());
    }
    let account = account.ok_or(PaymentError::PayoutAccountRequired)?;
    let operation = match p
        .gateway()
        .payout(&payout_id.to_string(), &account, amount, &currency)
        .await
    {
        Ok(operation) => operation,
        Err(GatewayError::Unavailable(reason)) => {
            tracing::info!(%payout_id, reason, "payout left pending: the provider is unavailable");
            return Err(PaymentError::ProviderUnavailable);
        }
        Err(error) => {
            tracing::error!(%payout_id, %error, "the provider refused a payout; it stays pending");
            return Err(error.into());
        }
    };
    // A webhook may already have settled it: only `pending` moves on.
    sqlx::query(
        "UPDATE payouts SET provider_payout_id = $2, status = 'in_transit', updated_at = now()
          WHERE id = $1 AND status = 'pending'",
    )
    .bind(payout_id)
    .bind(&operation.provider_id)
    .execute(p.db())
    .await?;
    Ok(())
}

/// Applies a `payout.paid` / `payout.failed` webhook; returns the outcome
/// recorded with the event (`applied`, `ignored`).
pub async fn apply_webhook(p: &Payments, event: &WebhookEvent) -> anyhow::Result<&'static str> {
    let paid = match event.event_type.as_str() {
        "payout.paid" => true,
        "payout.failed" => false,
        _ => return Ok("ignored"),
    };
    let data = &event.data;
    let mut tx = p.db().begin().await?;
    let by_reference = data
        .payout_reference
        .as_deref()
        .and_then(|r| Uuid::parse_str(r).ok());
    let payout: Option<(Uuid, Uuid, String, i64, String)> = sqlx::query_as(
        "SELECT id, user_id, currency::text, amount, status FROM payouts
          WHERE id = $1 OR ($1::uuid IS NULL AND provider_payout_id = $2::text)
          FOR UPDATE",
    )
    .bind(by_reference)
    .bind(data.provider_payout_id.as_deref())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, user_id, currency, amount, status)) = payout else {
        tracing::warn!(
            event_id = event.id,
            "payout webhook about an unknown payout"
        );
        return Ok("ignored");
    };
    if !matches!(status.as_str(), "pending" | "in_transit") {
        return Ok("ignored");
    }
    if data.amount != 0 && (data.amount != amount || !data.currency.eq_ignore_ascii_case(&currency))
    {
        tracing::error!(
            event_id = event.id, %id, amount, event_amount = data.amount,
            "payout webhook disagrees with the payout; not applied"
        );
        return Ok("ignored");
    }
    let pending_account = p
        .accounts()
        .house(AccountKind::PayoutsPending, &currency)
        .await?;
    if paid {
        let clearing = p
            .accounts()
            .house(AccountKind::GatewayClearing, &currency)
            .await?;
        ledger::transfer(
            &mut tx,
            NewTransfer::between(
                TransferKind::Payout,
                Phase::Posted,
                &currency,
                pending_account,
                clearing,
                amount,
            )
            .user(user_id)
            .provider_ref(data.provider_payout_id.as_deref())
            .describe("payout paid by the bank"),
        )
        .await?;
    } else {
        let wallet = p.accounts().wallet(user_id, &currency).await?;
        ledger::transfer(
            &mut tx,
            NewTransfer::between(
                TransferKind::PayoutReturn,
                Phase::Posted,
                &currency,
                pending_account,
                wallet,
                amount,
            )
            .user(user_id)
            .provider_ref(data.provider_payout_id.as_deref())
            .describe("payout failed: money back in the wallet"),
        )
        .await?;
    }
    sqlx::query(
        "UPDATE payouts SET status = $2, failure_code = $3,
                provider_payout_id = COALESCE(provider_payout_id, $4), updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(if paid { "paid" } else { "failed" })
    .bind(if paid {
        None
    } else {
        Some(data.failure_code.as_deref().unwrap_or("payout_failed"))
    })
    .bind(data.provider_payout_id.as_deref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok("applied")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_numbers_are_told_apart_from_tokens() {
        assert!(looks_like_account_number("DE89 3704 0044 0532 0130 00"));
        assert!(looks_like_account_number("000123456789"));
        assert!(!looks_like_account_number("btok_ok"));
        assert!(!looks_like_account_number("btok_fail"));
        assert!(!looks_like_account_number("btok_1234567"));
    }
}
