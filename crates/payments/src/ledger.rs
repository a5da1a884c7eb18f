//! The double-entry ledger: the only way money moves (ADR 0010).
//!
//! A transfer moves money between accounts in one currency; its legs sum to
//! zero. The database enforces the rules (balanced transfers, append-only
//! entries, no wallet below zero, pending → posted | voided once; see
//! `migrations/20261122000006_ledger.sql`); this module checks the balance
//! in Rust as well, so a bug fails before a round trip, and names things.
//!
//! Every function takes the caller's connection: a transfer commits with
//! the business change that causes it, or not at all.

use std::{collections::HashMap, sync::RwLock};

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

/// What an account holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A user's money at Rentify (renter, owner or driver): never negative.
    Wallet,
    /// The platform's fees and commissions.
    PlatformRevenue,
    /// Captured booking payments not yet settled.
    Escrow,
    /// Captured deposits, returned or taken for damage.
    DepositsHeld,
    /// The outside world through the gateway: money in from cards shows
    /// here as negative, money out to banks and refunds as positive.
    GatewayClearing,
    /// Payouts sent to the gateway and not yet confirmed paid.
    PayoutsPending,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wallet => "wallet",
            Self::PlatformRevenue => "platform_revenue",
            Self::Escrow => "escrow",
            Self::DepositsHeld => "deposits_held",
            Self::GatewayClearing => "gateway_clearing",
            Self::PayoutsPending => "payouts_pending",
        }
    }

    /// Wallets keep a running balance the database keeps non-negative;
    /// house accounts keep none, so no transfer waits on their row.
    fn tracked(self) -> bool {
        self == Self::Wallet
    }
}

/// Why a transfer happened; the seed's transaction `type` is derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// A booking's payment: card → escrow.
    Charge,
    /// Money back to the card: escrow → card.
    Refund,
    /// A booking's deposit: card → deposits held.
    DepositHold,
    /// The deposit back to the card.
    DepositRelease,
    /// The deposit (or part) to the owner for damage.
    DepositCapture,
    /// A booking's escrow to the owner's wallet and the platform's revenue.
    Settlement,
    /// A wallet's money sent to a bank account.
    Payout,
    /// A failed payout's money back to the wallet.
    PayoutReturn,
    /// A wallet top-up by card.
    WalletDeposit,
    /// A user's withdrawal from their wallet (held while in review).
    Withdrawal,
    /// An owner's earnings reserved while a dispute is open.
    DisputeHold,
    /// Earnings taken back from an owner by a dispute resolution.
    DisputeClawback,
    /// An operator's correction.
    Adjustment,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Refund => "refund",
            Self::DepositHold => "deposit_hold",
            Self::DepositRelease => "deposit_release",
            Self::DepositCapture => "deposit_capture",
            Self::Settlement => "settlement",
            Self::Payout => "payout",
            Self::PayoutReturn => "payout_return",
            Self::WalletDeposit => "wallet_deposit",
            Self::Withdrawal => "withdrawal",
            Self::DisputeHold => "dispute_hold",
            Self::DisputeClawback => "dispute_clawback",
            Self::Adjustment => "adjustment",
        }
    }
}

/// A transfer's phase at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reserve now, post or void later (holds).
    Pending,
    /// Final at once.
    Posted,
}

/// One account's share of a transfer: positive receives, negative gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub account: Uuid,
    pub amount: i64,
}

/// A transfer to write.
#[derive(Clone, Debug)]
pub struct NewTransfer<'a> {
    pub kind: TransferKind,
    pub phase: Phase,
    pub currency: &'a str,
    pub legs: Vec<Leg>,
    pub booking_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub intent_id: Option<Uuid>,
    pub provider_ref: Option<&'a str>,
    pub description: &'a str,
}

impl<'a> NewTransfer<'a> {
    /// A simple transfer of `amount` from one account to another.
    pub fn between(
        kind: TransferKind,
        phase: Phase,
        currency: &'a str,
        from: Uuid,
        to: Uuid,
        amount: i64,
    ) -> Self {
        Self {
            kind,
            phase,
            currency,
            legs: vec![
                Leg {
                    account: from,
                    amount: -amount,
                },
                Leg {
                    account: to,
                    amount,
                },
            ],
            booking_id: None,
            user_id: None,
            intent_id: None,
            provider_ref: None,
            description: "",
        }
    }

    pub fn booking(mut self, id: Uuid) -> Self {
        self.booking_id = Some(id);
        self
    }

    pub fn user(mut self, id: Uuid) -> Self {
        self.user_id = Some(id);
        self
    }

    pub fn intent(mut self, id: Uuid) -> Self {
        self.intent_id = Some(id);
        self
    }

    pub fn provider_ref(mut self, reference: Option<&'a str>) -> Self {
        self.provider_ref = reference;
        self
    }

    pub fn describe(mut self, description: &'a str) -> Self {
        self.description = description;
        self
    }
}

/// Why the ledger refused a transfer.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A wallet would go below zero (the database's `ledger_no_overdraft`).
    #[error("insufficient funds")]
    InsufficientFunds,
    /// The legs do not sum to zero, or move nothing.
    #[error("the transfer does not balance: {0}")]
    Unbalanced(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl LedgerError {
    fn from_db(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("ledger_no_overdraft") => {
                Self::InsufficientFunds
            }
            _ => Self::Database(error),
        }
    }
}

impl From<LedgerError> for rentify_platform::ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::InsufficientFunds => rentify_platform::ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "insufficient_funds",
                "the wallet does not hold enough available money for this",
            ),
            LedgerError::Unbalanced(message) => anyhow::anyhow!(message).into(),
            LedgerError::Database(error) => error.into(),
        }
    }
}

/// Checks a transfer's legs: non-empty, non-zero, summing to zero.
/// Returns the gross amount moved.
pub fn check_balanced(legs: &[Leg]) -> Result<i64, LedgerError> {
    let mut sum: i64 = 0;
    let mut credits: i64 = 0;
    for leg in legs {
        sum = sum
            .checked_add(leg.amount)
            .ok_or_else(|| LedgerError::Unbalanced("overflow".into()))?;
        if leg.amount > 0 {
            credits += leg.amount;
        }
    }
    if sum != 0 {
        return Err(LedgerError::Unbalanced(format!("legs sum to {sum}")));
    }
    if credits == 0 {
        return Err(LedgerError::Unbalanced("the transfer moves nothing".into()));
    }
    Ok(credits)
}

/// Writes a transfer (its legs of zero are dropped); returns its id.
pub async fn transfer(conn: &mut PgConnection, t: NewTransfer<'_>) -> Result<Uuid, LedgerError> {
    check_balanced(&t.legs)?;
    let id = Uuid::now_v7();
    let (accounts, amounts): (Vec<Uuid>, Vec<i64>) =
        t.legs.iter().map(|l| (l.account, l.amount)).unzip();
    sqlx::query("SELECT ledger_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(id)
        .bind(t.kind.as_str())
        .bind(match t.phase {
            Phase::Pending => "pending",
            Phase::Posted => "posted",
        })
        .bind(t.currency)
        .bind(&accounts)
        .bind(&amounts)
        .bind(t.booking_id)
        .bind(t.user_id)
        .bind(t.intent_id)
        .bind(t.provider_ref)
        .bind(t.description)
        .execute(conn)
        .await
        .map_err(LedgerError::from_db)?;
    Ok(id)
}

/// Posts the pending transfers `post` and writes `transfers`, atomically,
/// in one statement (one round trip, its own transaction in autocommit):
/// settling a booking moves several transfers at once, and on a busy ledger
/// each round trip costs more than the work it carries. Returns the new
/// transfers' ids; fails (and writes nothing) unless every `post` was
/// pending.
pub async fn batch(
    conn: &mut PgConnection,
    post: &[Uuid],
    transfers: &[NewTransfer<'_>],
) -> Result<Vec<Uuid>, LedgerError> {
    let mut sql = String::from(
        "WITH posted AS (UPDATE ledger_transfers SET status = 'posted'
                          WHERE id = ANY ($1) AND status = 'pending' RETURNING id)
         SELECT ledger_batch_posted((SELECT count(*) FROM posted), cardinality($1))",
    );
    for n in 0..transfers.len() {
        let b = 2 + n * 11;
        sql.push_str(&format!(
            ", ledger_transfer(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b,
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10
        ));
    }
    let mut query = sqlx::query(&sql).bind(post);
    let mut ids = Vec::with_capacity(transfers.len());
    for t in transfers {
        check_balanced(&t.legs)?;
        let id = Uuid::now_v7();
        ids.push(id);
        let (accounts, amounts): (Vec<Uuid>, Vec<i64>) =
            t.legs.iter().map(|l| (l.account, l.amount)).unzip();
        query = query
            .bind(id)
            .bind(t.kind.as_str())
            .bind(match t.phase {
                Phase::Pending => "pending",
                Phase::Posted => "posted",
            })
            .bind(t.currency)
            .bind(accounts)
            .bind(amounts)
            .bind(t.booking_id)
            .bind(t.user_id)
            .bind(t.intent_id)
            .bind(t.provider_ref)
            .bind(t.description);
    }
    query.execute(conn).await.map_err(LedgerError::from_db)?;
    Ok(ids)
}

/// Posts a pending transfer; `false` if it was not pending (already posted
/// or voided), which makes posting idempotent.
pub async fn post(conn: &mut PgConnection, id: Uuid) -> Result<bool, LedgerError> {
    resolve(conn, id, "posted").await
}

/// Voids a pending transfer; `false` if it was not pending.
pub async fn void(conn: &mut PgConnection, id: Uuid) -> Result<bool, LedgerError> {
    resolve(conn, id, "voided").await
}

async fn resolve(conn: &mut PgConnection, id: Uuid, status: &str) -> Result<bool, LedgerError> {
    let done =
        sqlx::query("UPDATE ledger_transfers SET status = $2 WHERE id = $1 AND status = 'pending'")
            .bind(id)
            .bind(status)
            .execute(conn)
            .await
            .map_err(LedgerError::from_db)?;
    Ok(done.rows_affected() == 1)
}

/// A wallet's money.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct WalletBalance {
    /// Posted money in the wallet.
    pub balance: i64,
    /// Reserved by pending transfers (withdrawals in review, dispute holds).
    pub held: i64,
    /// What can be spent or withdrawn: `balance - held`.
    pub available: i64,
}

/// `user_id`'s wallet in `currency` (zero when it has none yet).
pub async fn wallet_balance(
    conn: &mut PgConnection,
    user_id: Uuid,
    currency: &str,
) -> Result<WalletBalance, LedgerError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT posted, pending_debits FROM ledger_accounts
          WHERE kind = 'wallet' AND owner_id = $1 AND currency = $2",
    )
    .bind(user_id)
    .bind(currency)
    .fetch_optional(conn)
    .await?;
    let (balance, held) = row.unwrap_or_default();
    Ok(WalletBalance {
        balance,
        held,
        available: balance - held,
    })
}

/// Account ids by (kind, owner, currency). They never change once created,
/// so a process caches them for good. Accounts are created in their own
/// committed statement, not in the caller's transaction, so a cached id
/// always exists whatever the caller's transaction does.
///
/// That statement runs on a pool of its own (two connections): callers
/// look accounts up while holding row locks, and waiting there behind a
/// saturated API pool stalled every request queued behind those locks (the
/// 1000-client booking race, until this pool).
pub struct Accounts {
    pool: sqlx::PgPool,
    cache: RwLock<HashMap<AccountKey, Uuid>>,
}

/// An account's identity: kind, owner (wallets) and currency.
type AccountKey = (AccountKind, Option<Uuid>, String);

impl Accounts {
    /// Uses `pool`'s connection settings for its own small pool.
    pub fn new(pool: sqlx::PgPool) -> Self {
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_lazy_with((*pool.connect_options()).clone());
        Self {
            pool: own,
            cache: RwLock::default(),
        }
    }

    /// The house account of `kind` in `currency`, created on first use.
    pub async fn house(&self, kind: AccountKind, currency: &str) -> Result<Uuid, LedgerError> {
        self.get(kind, None, currency).await
    }

    /// `user_id`'s wallet in `currency`, created on first use.
    pub async fn wallet(&self, user_id: Uuid, currency: &str) -> Result<Uuid, LedgerError> {
        self.get(AccountKind::Wallet, Some(user_id), currency).await
    }

    async fn get(
        &self,
        kind: AccountKind,
        owner: Option<Uuid>,
        currency: &str,
    ) -> Result<Uuid, LedgerError> {
        let key = (kind, owner, currency.to_owned());
        if let Some(id) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(*id);
        }
        sqlx::query(
            "INSERT INTO ledger_accounts (id, kind, owner_id, currency, tracked)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT ON CONSTRAINT ledger_accounts_one_per_kind DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(kind.as_str())
        .bind(owner)
        .bind(currency)
        .bind(kind.tracked())
        .execute(&self.pool)
        .await?;
        let id: Uuid = sqlx::query_scalar(
            "SELECT id FROM ledger_accounts
              WHERE kind = $1 AND owner_id IS NOT DISTINCT FROM $2 AND currency = $3",
        )
        .bind(kind.as_str())
        .bind(owner)
        .bind(currency)
        .fetch_one(&self.pool)
        .await?;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(key, id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(amount: i64) -> Leg {
        Leg {
            account: Uuid::nil(),
            amount,
        }
    }

    #[test]
    fn a_transfer_must_balance_and_move_something() {
        assert_eq!(check_balanced(&[leg(-100), leg(60), leg(40)]).unwrap(), 100);
        assert!(matches!(
            check_balanced(&[leg(-100), leg(99)]),
            Err(LedgerError::Unbalanced(_))
        ));
        assert!(matches!(
            check_balanced(&[]),
            Err(LedgerError::Unbalanced(_))
        ));
        assert!(matches!(
            check_balanced(&[leg(i64::MAX), leg(1)]),
            Err(LedgerError::Unbalanced(_))
        ));
    }
}
