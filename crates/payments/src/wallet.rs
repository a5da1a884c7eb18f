//! Wallets, deposits, withdrawals and their fraud checks.
//!
//! A wallet is a ledger account the database keeps from going below zero,
//! counting what pending transfers reserve; so a withdrawal is a pending
//! transfer out of the wallet (the hold) that an approval posts and a
//! rejection voids, and concurrent withdrawals cannot spend the same money
//! twice whatever the code does.
//!
//! A deposit is credited only by the gateway's signed `payment_intent.captured`
//! webhook (see `webhooks`), never by the answer to the call: the answer may
//! be lost, and the webhook arrives in every case, so one path credits once.

use axum::{Extension, Json, http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::{AdminCaller, UserCaller},
    error::ErrorEnvelope,
    extract::{Json as JsonBody, Path, ValidQuery},
    idempotency::{self, Begin, IdempotencyKey, Pending, Scope},
    pagination::{Cursor, Page},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Payments,
    error::{PaymentError, PaymentResult},
    gateway::IntentStatus,
    intents::{self, NewIntent},
    ledger::{self, AccountKind, NewTransfer, Phase, TransferKind, WalletBalance},
    payouts,
};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(get_wallet))
        .routes(routes!(create_deposit))
        .routes(routes!(create_withdrawal))
        .routes(routes!(list_withdrawals))
        .routes(routes!(approve_withdrawal))
        .routes(routes!(reject_withdrawal))
}

/// The largest deposit or withdrawal, in minor units.
pub const MAX_AMOUNT: i64 = 100_000_000;

/// How many entries `GET /v1/wallet` shows.
const RECENT: i64 = 20;

fn check_amount(amount: i64) -> Result<(), ApiError> {
    if (1..=MAX_AMOUNT).contains(&amount) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "amount",
            "range",
            format!("an amount in minor units, 1 to {MAX_AMOUNT}"),
        ))
    }
}

fn check_currency(currency: &str) -> Result<(), ApiError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "currency",
            "format",
            "a three-letter ISO 4217 code in capitals (EUR)",
        ))
    }
}

// ---------------------------------------------------------------- wallet

/// `?currency=` of `GET /v1/wallet`.
#[derive(Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct WalletQuery {
    /// The wallet's currency (default `EUR`).
    pub currency: Option<String>,
}

/// One movement of the wallet.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct WalletEntry {
    pub transfer_id: Uuid,
    /// Why the money moved (`wallet_deposit`, `earning`, `withdrawal`,
    /// `payout`, `payout_return`, …).
    pub kind: String,
    /// Signed: positive into the wallet, negative out of it.
    pub amount: i64,
    /// `pending` (a hold), `posted` or `voided`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// The caller's money in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Wallet {
    #[schema(example = "wallet")]
    pub object: &'static str,
    pub currency: String,
    #[serde(flatten)]
    pub balance: WalletBalance,
    /// The 20 latest movements, newest first.
    pub recent: Vec<WalletEntry>,
}

/// The caller's wallet: posted balance, what pending withdrawals and
/// disputes hold, what is available, and the latest movements.
#[utoipa::path(
    get, path = "/v1/wallet", tag = "payments",
    security(("bearer" = [])),
    params(WalletQuery),
    responses(
        (status = 200, description = "The wallet (zero if never used)", body = Wallet),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
    )
)]
pub async fn get_wallet(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    ValidQuery(query): ValidQuery<WalletQuery>,
) -> ApiResult<Json<Wallet>> {
    let currency = query.currency.unwrap_or_else(|| "EUR".to_owned());
    check_currency(&currency)?;
    let mut conn = payments.db().acquire().await?;
    // Read-only: a wallet is created by its first credit, not by a look.
    let account: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ledger_accounts WHERE kind = 'wallet' AND owner_id = $1 AND currency = $2",
    )
    .bind(caller.user_id)
    .bind(&currency)
    .fetch_optional(&mut *conn)
    .await?;
    let balance = ledger::wallet_balance(&mut conn, caller.user_id, &currency)
        .await
        .map_err(PaymentError::from)?;
    let recent = match account {
        Some(account) => {
            sqlx::query_as(
                "SELECT e.transfer_id, t.kind, e.amount, t.status, e.created_at
                   FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id
                  WHERE e.account_id = $1 AND e.tracked
                  ORDER BY e.id DESC LIMIT $2",
            )
            .bind(account)
            .bind(RECENT)
            .fetch_all(&mut *conn)
            .await?
        }
        None => Vec::new(),
    };
    Ok(Json(Wallet {
        object: "wallet",
        currency,
        balance,
        recent,
    }))
}

// ---------------------------------------------------------------- deposits

/// `POST /v1/wallet/deposits`'s body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewDeposit {
    /// Minor units, 1 to 100 000 000.
    pub amount: i64,
    #[schema(example = "EUR")]
    pub currency: String,
    /// The card to charge; default the caller's default card.
    #[serde(default)]
    pub payment_method_id: Option<Uuid>,
}

/// A wallet top-up, as accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deposit {
    /// The payment intent's id.
    pub id: Uuid,
    #[schema(example = "wallet_deposit")]
    pub object: &'static str,
    pub amount: i64,
    pub currency: String,
    /// `pending`: charged or being charged; the wallet is credited when the
    /// processor confirms the capture. `failed`: nothing was charged.
    pub status: &'static str,
}

/// Claims the request's `Idempotency-Key` on `tx`; `Err` is the replay.
async fn begin_idempotent(
    p: &Payments,
    tx: &mut PgConnection,
    key: &IdempotencyKey,
    principal: &str,
    path: &str,
    body: &serde_json::Value,
) -> ApiResult<Result<Pending, Response>> {
    let scope = Scope {
        principal,
        method: "POST",
        path,
        body,
    };
    match idempotency::begin(tx, key, scope, p.platform().config.idempotency_ttl_hours).await? {
        Begin::Replay(response) => Ok(Err(response)),
        Begin::Proceed(pending) => Ok(Ok(pending)),
    }
}

/// The intent id of a deposit request: derived from the caller, the key
/// and the body, so a retry after a crash or an outage (whose key was not
/// stored) finds the same intent, and the gateway, idempotent on the
/// intent id, never charges twice.
fn deposit_intent_id(principal: &str, key: &str, body: &serde_json::Value) -> Uuid {
    // The fingerprint covers method, path and body only: the caller and
    // the key go into the path.
    let path = format!("wallet_deposit_intent\u{1f}{principal}\u{1f}{key}");
    let digest = idempotency::fingerprint(&Scope {
        principal,
        method: "POST",
        path: &path,
        body,
    });
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The card to charge: the one named (the caller's, not deleted) or the
/// caller's default.
async fn resolve_method(
    conn: &mut PgConnection,
    user_id: Uuid,
    named: Option<Uuid>,
) -> PaymentResult<Uuid> {
    let found: Option<Uuid> = match named {
        Some(id) => sqlx::query_scalar(
            "SELECT id FROM payment_methods WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?,
        None => {
            sqlx::query_scalar(
                "SELECT id FROM payment_methods
                  WHERE user_id = $1 AND is_default AND deleted_at IS NULL",
            )
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    match (found, named) {
        (Some(id), _) => Ok(id),
        (None, None) => Err(PaymentError::MethodRequired),
        (None, Some(_)) => Err(ApiError::invalid_field(
            "payment_method_id",
            "unknown",
            "no such payment method of yours",
        )
        .into()),
    }
}

/// Tops up the caller's wallet from a card. The card is charged now; the
/// wallet is credited when the processor's `payment_intent.captured`
/// webhook confirms it (poll `GET /v1/wallet`).
#[utoipa::path(
    post, path = "/v1/wallet/deposits", tag = "payments",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Required: a retry with the same key replays the first answer and never charges twice.")),
    request_body = NewDeposit,
    responses(
        (status = 202, description = "Accepted; credited on the processor's confirmation", body = Deposit),
        (status = 400, description = "`validation_failed` (also a missing `Idempotency-Key`), `payment_refused`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 402, description = "`payment_method_required`, `payment_declined`", body = ErrorEnvelope),
        (status = 409, description = "`idempotency_key_in_progress`", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
        (status = 503, description = "`payment_provider_unavailable`: retry with the same key", body = ErrorEnvelope),
    )
)]
pub async fn create_deposit(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    key: IdempotencyKey,
    JsonBody(input): JsonBody<NewDeposit>,
) -> ApiResult<Response> {
    let raw_key = key.required()?;
    check_amount(input.amount)?;
    check_currency(&input.currency)?;
    let principal = caller.user_id.to_string();
    let body = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let key = IdempotencyKey(Some(raw_key.clone()));
    let p = &payments;
    const PATH: &str = "/v1/wallet/deposits";

    // No transaction is held through the gateway call (a slow gateway
    // must not pin connections): the key is looked up first and claimed
    // after the call. Two concurrent requests with one key derive the same
    // intent, the gateway answers both alike, and the second to store
    // replays the first.
    let method = {
        let mut tx = p.db().begin().await?;
        if let Err(replay) = begin_idempotent(p, &mut tx, &key, &principal, PATH, &body).await? {
            return Ok(replay);
        }
        resolve_method(&mut tx, caller.user_id, input.payment_method_id).await?
    };
    let intent_id = deposit_intent_id(&principal, &raw_key, &body);
    // Committed before the gateway hears of the intent, so its webhook
    // always finds it.
    let opened = intents::open(
        &mut *p.db().acquire().await?,
        NewIntent {
            id: intent_id,
            purpose: "wallet_deposit",
            booking_id: None,
            user_id: caller.user_id,
            payment_method_id: method,
            currency: &input.currency,
            amount: input.amount,
            deposit: 0,
        },
    )
    .await;
    match opened {
        Ok(()) => {}
        // A retry of a request that opened it (or a concurrent twin).
        Err(PaymentError::Database(sqlx::Error::Database(db))) if db.is_unique_violation() => {}
        Err(error) => return Err(error.into()),
    }

    let answer = intents::request_authorization(p, intent_id, true, "wallet top-up").await?;
    let status = match answer {
        Ok(state) if state.status == IntentStatus::Failed => "failed",
        Ok(_) => "pending",
        Err(error @ (PaymentError::Declined { .. } | PaymentError::Refused(_))) => {
            let (code, message) = match &error {
                PaymentError::Declined { code, message } => (code.clone(), message.clone()),
                other => ("invalid_request".to_owned(), other.to_string()),
            };
            let mut failed = p.db().begin().await?;
            let intent = intents::lock(&mut failed, intent_id).await?;
            intents::record_failed(&mut failed, &intent, &code, &message).await?;
            failed.commit().await?;
            return Err(error.into());
        }
        // Unavailable: the outcome is unknown; the intent stays
        // `authorizing` (a capture still arrives by webhook) and a retry
        // with the same key asks the gateway again about the same intent.
        Err(error) => return Err(error.into()),
    };
    let deposit = Deposit {
        id: intent_id,
        object: "wallet_deposit",
        amount: input.amount,
        currency: input.currency,
        status,
    };
    let mut tx = p.db().begin().await?;
    let pending = match begin_idempotent(p, &mut tx, &key, &principal, PATH, &body).await? {
        Ok(pending) => pending,
        Err(replay) => return Ok(replay),
    };
    let response = pending
        .complete(&mut tx, StatusCode::ACCEPTED, &deposit)
        .await?;
    tx.commit().await?;
    Ok(response)
}

// ---------------------------------------------------------------- fraud

/// Fraud checks on a withdrawal: pure functions of the user's recent
/// history, so the rules are tested without a database.
pub mod fraud {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Serialize};
    use sqlx::PgConnection;
    use utoipa::ToSchema;
    use uuid::Uuid;

    /// The thresholds (`FRAUD_*` settings).
    #[derive(Clone, Copy, Debug)]
    pub struct Rules {
        pub max_transactions_per_hour: u32,
        pub amount_factor: u32,
        pub deposit_withdraw_window_secs: u64,
    }

    impl Rules {
        pub fn from_config(config: &rentify_platform::config::Config) -> Self {
            Self {
                max_transactions_per_hour: config.fraud_max_transactions_per_hour,
                amount_factor: config.fraud_amount_factor,
                deposit_withdraw_window_secs: config.fraud_deposit_withdraw_window_secs,
            }
        }
    }

    /// What the checks look at.
    #[derive(Clone, Debug, Default)]
    pub struct History {
        /// Transfers that moved the wallet in the last hour.
        pub transfers_last_hour: i64,
        /// The largest credit the wallet ever received, if any.
        pub largest_credit: Option<i64>,
        /// When the latest card deposit was credited, if any.
        pub last_deposit_at: Option<DateTime<Utc>>,
    }

    impl History {
        /// The history of `user_id`'s wallet in `currency`.
        pub async fn load(
            conn: &mut PgConnection,
            user_id: Uuid,
            currency: &str,
        ) -> sqlx::Result<Self> {
            let (transfers_last_hour, largest_credit, last_deposit_at) = sqlx::query_as(
                "SELECT count(DISTINCT e.transfer_id) FILTER (WHERE e.created_at > now() - interval '1 hour'),
                        max(e.amount) FILTER (WHERE e.amount > 0 AND t.status = 'posted'),
                        max(e.created_at) FILTER (WHERE t.kind = 'wallet_deposit' AND t.status = 'posted')
                   FROM ledger_accounts a
                   JOIN ledger_entries e ON e.account_id = a.id
                   JOIN ledger_transfers t ON t.id = e.transfer_id
                  WHERE a.kind = 'wallet' AND a.owner_id = $1 AND a.currency = $2 AND e.tracked",
            )
            .bind(user_id)
            .bind(currency)
            .fetch_one(conn)
            .await?;
            Ok(Self {
                transfers_last_hour,
                largest_credit,
                last_deposit_at,
            })
        }
    }

    /// Why a withdrawal went to review.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
    pub struct Flag {
        /// `velocity`, `amount_anomaly` or `deposit_then_withdraw`.
        pub check: String,
        pub detail: String,
    }

    fn flag(check: &str, detail: String) -> Flag {
        Flag {
            check: check.to_owned(),
            detail,
        }
    }

    /// Every check a withdrawal of `amount` fails at `now`; none: approve.
    pub fn check(history: &History, rules: &Rules, amount: i64, now: DateTime<Utc>) -> Vec<Flag> {
        let mut flags = Vec::new();
        // This withdrawal counts as one more transaction.
        let count = history.transfers_last_hour + 1;
        if count > i64::from(rules.max_transactions_per_hour) {
            flags.push(flag(
                "velocity",
                format!(
                    "{count} wallet transactions within an hour (limit {})",
                    rules.max_transactions_per_hour
                ),
            ));
        }
        if let Some(largest) = history.largest_credit.filter(|l| *l > 0) {
            let limit = largest.saturating_mul(i64::from(rules.amount_factor));
            if amount > limit {
                flags.push(flag(
                    "amount_anomaly",
                    format!(
                        "{amount} is more than {}× the largest earlier credit ({largest})",
                        rules.amount_factor
                    ),
                ));
            }
        }
        if let Some(at) = history.last_deposit_at {
            let since = (now - at).num_seconds();
            let window = i64::try_from(rules.deposit_withdraw_window_secs).unwrap_or(i64::MAX);
            if since < window {
                flags.push(flag(
                    "deposit_then_withdraw",
                    format!("a card deposit {since} s ago (window {window} s)"),
                ));
            }
        }
        flags
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const RULES: Rules = Rules {
            max_transactions_per_hour: 3,
            amount_factor: 5,
            deposit_withdraw_window_secs: 600,
        };

        fn checks(history: &History, amount: i64) -> Vec<String> {
            check(history, &RULES, amount, Utc::now())
                .into_iter()
                .map(|f| f.check)
                .collect()
        }

        #[test]
        fn a_quiet_history_passes() {
            let history = History {
                transfers_last_hour: 1,
                largest_credit: Some(10_000),
                last_deposit_at: Some(Utc::now() - chrono::Duration::hours(2)),
            };
            assert!(checks(&history, 10_000).is_empty());
            assert!(checks(&History::default(), 1_000_000).is_empty());
        }

        #[test]
        fn velocity_counts_this_withdrawal() {
            let mut history = History {
                transfers_last_hour: 2,
                ..History::default()
            };
            assert!(checks(&history, 100).is_empty());
            history.transfers_last_hour = 3;
            assert_eq!(checks(&history, 100), ["velocity"]);
        }

        #[test]
        fn an_amount_far_above_any_earlier_credit_is_anomalous() {
            let history = History {
                largest_credit: Some(1_000),
                ..History::default()
            };
            assert!(checks(&history, 5_000).is_empty());
            assert_eq!(checks(&history, 5_001), ["amount_anomaly"]);
        }

        #[test]
        fn withdrawing_right_after_a_deposit_is_flagged() {
            let mut history = History {
                last_deposit_at: Some(Utc::now() - chrono::Duration::seconds(30)),
                ..History::default()
            };
            assert_eq!(checks(&history, 100), ["deposit_then_withdraw"]);
            history.last_deposit_at = Some(Utc::now() - chrono::Duration::seconds(601));
            assert!(checks(&history, 100).is_empty());
            let off = Rules {
                deposit_withdraw_window_secs: 0,
                ..RULES
            };
            history.last_deposit_at = Some(Utc::now());
            assert!(check(&history, &off, 100, Utc::now()).is_empty());
        }

        #[test]
        fn several_flags_add_up() {
            let history = History {
                transfers_last_hour: 10,
                largest_credit: Some(10),
                last_deposit_at: Some(Utc::now()),
            };
            assert_eq!(
                checks(&history, 1_000),
                ["velocity", "amount_anomaly", "deposit_then_withdraw"]
            );
        }
    }
}

// ---------------------------------------------------------------- withdrawals

/// `POST /v1/wallet/withdrawals`'s body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewWithdrawal {
    /// Minor units, 1 to 100 000 000.
    pub amount: i64,
    #[schema(example = "EUR")]
    pub currency: String,
}

/// A request to take money out of a wallet.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Withdrawal {
    pub id: Uuid,
    #[schema(example = "withdrawal")]
    #[sqlx(skip)]
    pub object: &'static str,
    pub user_id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// `in_review` (the money is held), `approved` (paid out: see
    /// `payout_id`) or `rejected` (the money is available again).
    pub status: String,
    /// The fraud checks that sent it to review.
    #[schema(value_type = Vec<fraud::Flag>)]
    pub flags: sqlx::types::Json<Vec<fraud::Flag>>,
    pub payout_id: Option<Uuid>,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Why it was rejected.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub transfer_id: Uuid,
}

const WITHDRAWAL_COLUMNS: &str = "id, user_id, amount, currency::text AS currency, status, flags,
    payout_id, decided_by, decided_at, reason, created_at, transfer_id";

async fn load_withdrawal(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> PaymentResult<Withdrawal> {
    let mut row: Withdrawal = sqlx::query_as(&format!(
        "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(PaymentError::NotFound)?;
    row.object = "withdrawal";
    Ok(row)
}

/// Posts a held withdrawal (the money leaves the wallet for
/// `payouts_pending`) and creates its payout, in the caller's transaction;
/// the payout is sent after the commit. Returns the payout id.
async fn approve_in(
    conn: &mut PgConnection,
    withdrawal: &Withdrawal,
    decided_by: Option<Uuid>,
) -> PaymentResult<Uuid> {
    ledger::post(&mut *conn, withdrawal.transfer_id).await?;
    let payout = payouts::create(
        &mut *conn,
        withdrawal.user_id,
        "withdrawal",
        &withdrawal.currency,
        withdrawal.amount,
        withdrawal.transfer_id,
    )
    .await?;
    sqlx::query(
        "UPDATE withdrawals SET status = 'approved', payout_id = $2, decided_by = $3,
                decided_at = CASE WHEN $3::uuid IS NULL THEN NULL ELSE now() END
          WHERE id = $1",
    )
    .bind(withdrawal.id)
    .bind(payout)
    .bind(decided_by)
    .execute(&mut *conn)
    .await?;
    Ok(payout)
}

/// Sends a payout just committed. Failure is not the request's failure:
/// the money is in `payouts_pending` and the daily job sends what is left
/// `pending`.
async fn send_after_commit(p: &Payments, payout: Uuid) {
    if let Err(error) = payouts::send(p, payout).await {
        tracing::warn!(payout_id = %payout, %error, "withdrawal payout left pending for the daily run");
    }
}

/// Takes money out of the wallet to the caller's payout account. The
/// amount is held at once (409 `insufficient_funds` if it is not
/// available); an ordinary request is approved and paid out at once, one
/// the fraud checks flag waits `in_review` for an admin.
#[utoipa::path(
    post, path = "/v1/wallet/withdrawals", tag = "payments",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Required: a retry with the same key replays the first answer.")),
    request_body = NewWithdrawal,
    responses(
        (status = 201, description = "`approved` (with its payout) or `in_review`", body = Withdrawal),
        (status = 400, description = "`validation_failed` (also a missing `Idempotency-Key`)", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 409, description = "`payout_account_required`, `insufficient_funds`, `idempotency_key_in_progress`", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
    )
)]
pub async fn create_withdrawal(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    key: IdempotencyKey,
    JsonBody(input): JsonBody<NewWithdrawal>,
) -> ApiResult<Response> {
    let key = IdempotencyKey(Some(key.required()?));
    check_amount(input.amount)?;
    check_currency(&input.currency)?;
    let p = &payments;
    let principal = caller.user_id.to_string();
    let body = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let currency = input.currency.as_str();
    let wallet = p
        .accounts()
        .wallet(caller.user_id, currency)
        .await
        .map_err(PaymentError::from)?;
    let pending_account = p
        .accounts()
        .house(AccountKind::PayoutsPending, currency)
        .await
        .map_err(PaymentError::from)?;

    let mut tx = p.db().begin().await?;
    let pending = match begin_idempotent(
        p,
        &mut tx,
        &key,
        &principal,
        "/v1/wallet/withdrawals",
        &body,
    )
    .await?
    {
        Ok(pending) => pending,
        Err(replay) => return Ok(replay),
    };
    let has_account: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payout_accounts WHERE user_id = $1)")
            .bind(caller.user_id)
            .fetch_one(&mut *tx)
            .await?;
    if !has_account {
        return Err(PaymentError::PayoutAccountRequired.into());
    }
    // The checks read the history before this withdrawal is part of it.
    let history = fraud::History::load(&mut tx, caller.user_id, currency).await?;
    let flags = fraud::check(
        &history,
        &fraud::Rules::from_config(&p.platform().config),
        input.amount,
        Utc::now(),
    );

    // The hold: the database refuses it if the money is not available,
    // however many withdrawals race for it.
    let transfer = ledger::transfer(
        &mut tx,
        NewTransfer::between(
            TransferKind::Withdrawal,
            Phase::Pending,
            currency,
            wallet,
            pending_account,
            input.amount,
        )
        .user(caller.user_id)
        .describe("withdrawal"),
    )
    .await
    .map_err(PaymentError::from)?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO withdrawals (id, user_id, currency, amount, status, flags, transfer_id)
         VALUES ($1, $2, $3, $4, 'in_review', $5, $6)",
    )
    .bind(id)
    .bind(caller.user_id)
    .bind(currency)
    .bind(input.amount)
    .bind(sqlx::types::Json(&flags))
    .bind(transfer)
    .execute(&mut *tx)
    .await?;
    let mut withdrawal = load_withdrawal(&mut tx, id, false).await?;
    let payout = if flags.is_empty() {
        let payout = approve_in(&mut tx, &withdrawal, None).await?;
        withdrawal = load_withdrawal(&mut tx, id, false).await?;
        Some(payout)
    } else {
        tracing::info!(withdrawal_id = %id, ?flags, "withdrawal sent to review");
        None
    };
    let response = pending
        .complete(&mut tx, StatusCode::CREATED, &withdrawal)
        .await?;
    tx.commit().await?;
    if let Some(payout) = payout {
        send_after_commit(p, payout).await;
    }
    Ok(response)
}

/// `?status=&limit=&cursor=` of the admin withdrawal list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct WithdrawalListParams {
    /// Page size, 1 to 50 (default 20).
    #[validate(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only withdrawals in this status (`in_review`, `approved`, `rejected`).
    pub status: Option<String>,
}

/// Withdrawals, newest first; `?status=in_review` is the review queue.
#[utoipa::path(
    get, path = "/v1/admin/withdrawals", tag = "admin",
    security(("bearer" = [])),
    params(WithdrawalListParams),
    responses(
        (status = 200, description = "A page of withdrawals", body = Page<Withdrawal>),
        (status = 400, description = "`validation_failed`, `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
    )
)]
pub async fn list_withdrawals(
    Extension(payments): Extension<Payments>,
    _admin: AdminCaller,
    ValidQuery(params): ValidQuery<WithdrawalListParams>,
) -> ApiResult<Json<Page<Withdrawal>>> {
    if let Some(status) = params.status.as_deref()
        && !matches!(status, "in_review" | "approved" | "rejected")
    {
        return Err(ApiError::invalid_field(
            "status",
            "enum",
            "one of in_review, approved, rejected",
        ));
    }
    let page = rentify_platform::pagination::PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let after = page.after::<Uuid>()?.map(|c| c.id);
    let rows: Vec<Withdrawal> = sqlx::query_as(&format!(
        "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals
          WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3"
    ))
    .bind(params.status.as_deref())
    .bind(after)
    .bind(page.fetch_limit())
    .fetch_all(payments.db())
    .await?;
    let page = Page::from_rows(rows, &page, |w| Cursor::new(w.id, w.id));
    Ok(Json(page.map(|w| Withdrawal {
        object: "withdrawal",
        ..w
    })))
}

/// Approves a withdrawal in review: the held money is paid out.
#[utoipa::path(
    post, path = "/v1/admin/withdrawals/{id}/approve", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Approved, with its payout", body = Withdrawal),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
        (status = 404, description = "No such withdrawal", body = ErrorEnvelope),
        (status = 409, description = "`invalid_payment_state`: already decided", body = ErrorEnvelope),
    )
)]
pub async fn approve_withdrawal(
    Extension(payments): Extension<Payments>,
    admin: AdminCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Withdrawal>> {
    let mut tx = payments.db().begin().await?;
    let withdrawal = load_withdrawal(&mut tx, id, true).await?;
    if withdrawal.status != "in_review" {
        return Err(PaymentError::InvalidState(withdrawal.status).into());
    }
    let payout = approve_in(&mut tx, &withdrawal, Some(admin.0.user_id)).await?;
    let withdrawal = load_withdrawal(&mut tx, id, false).await?;
    tx.commit().await?;
    send_after_commit(&payments, payout).await;
    Ok(Json(withdrawal))
}

/// `POST /v1/admin/withdrawals/{id}/reject`'s body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Rejection {
    /// Shown to the user; 1 to 500 characters.
    pub reason: String,
}

/// Rejects a withdrawal in review: the hold is released and the money is
/// available in the wallet again.
#[utoipa::path(
    post, path = "/v1/admin/withdrawals/{id}/reject", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = Rejection,
    responses(
        (status = 200, description = "Rejected", body = Withdrawal),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
        (status = 404, description = "No such withdrawal", body = ErrorEnvelope),
        (status = 409, description = "`invalid_payment_state`: already decided", body = ErrorEnvelope),
    )
)]
pub async fn reject_withdrawal(
    Extension(payments): Extension<Payments>,
    admin: AdminCaller,
    Path(id): Path<Uuid>,
    JsonBody(input): JsonBody<Rejection>,
) -> ApiResult<Json<Withdrawal>> {
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::invalid_field(
            "reason",
            "length",
            "1 to 500 characters",
        ));
    }
    let mut tx = payments.db().begin().await?;
    let withdrawal = load_withdrawal(&mut tx, id, true).await?;
    if withdrawal.status != "in_review" {
        return Err(PaymentError::InvalidState(withdrawal.status).into());
    }
    ledger::void(&mut tx, withdrawal.transfer_id)
        .await
        .map_err(PaymentError::from)?;
    sqlx::query(
        "UPDATE withdrawals SET status = 'rejected', reason = $2, decided_by = $3, decided_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(admin.0.user_id)
    .execute(&mut *tx)
    .await?;
    let withdrawal = load_withdrawal(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(withdrawal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_intents_are_stable_per_request() {
        let body = serde_json::json!({"amount": 100, "currency": "EUR"});
        let a = deposit_intent_id("u1", "k1", &body);
        assert_eq!(a, deposit_intent_id("u1", "k1", &body));
        assert_ne!(a, deposit_intent_id("u2", "k1", &body));
        assert_ne!(a, deposit_intent_id("u1", "k2", &body));
        let other = serde_json::json!({"amount": 101, "currency": "EUR"});
        assert_ne!(a, deposit_intent_id("u1", "k1", &other));
    }

    #[test]
    fn amounts_and_currencies_are_checked() {
        assert!(check_amount(1).is_ok());
        assert!(check_amount(MAX_AMOUNT).is_ok());
        assert!(check_amount(0).is_err());
        assert!(check_amount(MAX_AMOUNT + 1).is_err());
        assert!(check_currency("EUR").is_ok());
        assert!(check_currency("eur").is_err());
        assert!(check_currency("EURO").is_err());
    }
}
