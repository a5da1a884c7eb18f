//! A booking's money: line items, the hold, capture, refunds, settlement to
//! the owner and the platform, and disputes.
//!
//! ```text
//! authorize ─ hold: card → escrow (charge), card → deposits held (deposit)
//! start     ─ capture: the holds are posted
//! complete  ─ deposit back to the card; escrow → owner's wallet + platform
//! cancel    ─ the refund policy's refund as negative line items; the rest
//!             is captured and settled, or the hold voided if nothing is kept
//! dispute   ─ settlement paused; if already settled, the owner's earnings
//!             are held (a pending transfer) until the resolution
//! resolve   ─ refund and/or deposit capture for damage, then settle
//! ```
//!
//! Who is paid for what ([`split`]): rental and delivery go to the owner,
//! minus the platform's commission; the service fee, protection and the
//! commission are the platform's revenue. The renter's payin always equals
//! the owner's payout plus the platform's share, which the tests check.
//!
//! Each step runs as the `payments.booking_money` task the bookings module
//! enqueues in the transition's transaction. Steps are idempotent: each
//! gateway call has a key derived from the booking, each ledger effect is
//! guarded by the intent's status or an existing row.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    Payments,
    error::{PaymentError, PaymentResult},
    gateway::PaymentGateway,
    intents,
    jobs::MoneyTask,
    ledger::{self, AccountKind, Leg, NewTransfer, Phase, TransferKind},
};

/// What a booking charges, by component (minor units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Charges {
    pub rental: i64,
    pub delivery: i64,
    pub protection: i64,
    pub service_fee: i64,
    pub deposit: i64,
}

impl Charges {
    /// What the renter pays for good (without the deposit).
    pub fn price(&self) -> i64 {
        self.rental + self.delivery + self.protection + self.service_fee
    }
}

/// How settled money is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Split {
    pub owner: i64,
    pub platform: i64,
    pub commission: i64,
}

/// Shares what the renter finally paid (`net`, refunds deducted) between
/// the owner and the platform. Pure; `owner + platform == net.price()`.
pub fn split(net: &Charges, commission_bps: i64) -> Split {
    let earnings = (net.rental + net.delivery).max(0);
    let commission = earnings * commission_bps / 10_000;
    let owner = earnings - commission;
    Split {
        owner,
        platform: net.price() - owner,
        commission,
    }
}

/// Takes `amount` off `items` in the order a refund returns money: the
/// rental first, then delivery, protection and the service fee. Pure.
pub fn refund_components(items: &Charges, amount: i64) -> Charges {
    let mut left = amount.max(0);
    let mut take = |available: i64| {
        let taken = left.min(available.max(0));
        left -= taken;
        taken
    };
    Charges {
        rental: take(items.rental),
        delivery: take(items.delivery),
        protection: take(items.protection),
        service_fee: take(items.service_fee),
        deposit: 0,
    }
}

async fn insert_items(
    conn: &mut PgConnection,
    booking_id: Uuid,
    items: &Charges,
    sign: i64,
    source: &str,
) -> PaymentResult<()> {
    sqlx::query(
        "INSERT INTO booking_line_items (booking_id, kind, amount, source)
         SELECT $1, kind, amount * $2, $3
           FROM unnest($4::text[], $5::bigint[]) AS u(kind, amount) WHERE amount <> 0",
    )
    .bind(booking_id)
    .bind(sign)
    .bind(source)
    .bind(["rental", "delivery", "protection", "service_fee", "deposit"])
    .bind([
        items.rental,
        items.delivery,
        items.protection,
        items.service_fee,
        items.deposit,
    ])
    .execute(conn)
    .await?;
    Ok(())
}

/// Itemises a booking's charge (at its authorization), once.
pub async fn record_charges(
    conn: &mut PgConnection,
    booking_id: Uuid,
    items: &Charges,
) -> PaymentResult<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM booking_line_items WHERE booking_id = $1 AND source = 'charge')",
    )
    .bind(booking_id)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        insert_items(conn, booking_id, items, 1, "charge").await?;
    }
    Ok(())
}

/// Records a cancellation's refund as negative line items (in the cancel
/// transaction); the money follows in the `CancellationFee` or `Void` task.
pub async fn record_refund(
    conn: &mut PgConnection,
    booking_id: Uuid,
    refunded: &Charges,
) -> PaymentResult<()> {
    insert_items(conn, booking_id, refunded, -1, "refund").await
}

/// The net of a booking's line items by component (commission excluded).
pub async fn net(conn: &mut PgConnection, booking_id: Uuid) -> PaymentResult<Charges> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, sum(amount)::bigint FROM booking_line_items
          WHERE booking_id = $1 AND kind <> 'commission' GROUP BY kind",
    )
    .bind(booking_id)
    .fetch_all(conn)
    .await?;
    let mut net = Charges::default();
    for (kind, amount) in rows {
        match kind.as_str() {
            "rental" => net.rental = amount,
            "delivery" => net.delivery = amount,
            "protection" => net.protection = amount,
            "service_fee" => net.service_fee = amount,
            "deposit" => net.deposit = amount,
            _ => {}
        }
    }
    Ok(net)
}

/// The few facts about a booking the money needs (its one read of the
/// bookings module's table).
#[derive(Debug, sqlx::FromRow)]
struct BookingFacts {
    status: String,
    owner_id: Uuid,
}

async fn booking_facts(conn: &mut PgConnection, booking_id: Uuid) -> PaymentResult<BookingFacts> {
    sqlx::query_as("SELECT status, owner_id FROM bookings WHERE id = $1")
        .bind(booking_id)
        .fetch_optional(conn)
        .await?
        .ok_or(PaymentError::NotFound)
}

async fn settlement_exists(conn: &mut PgConnection, booking_id: Uuid) -> PaymentResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM booking_settlements WHERE booking_id = $1)",
    )
    .bind(booking_id)
    .fetch_one(conn)
    .await?)
}

/// Runs one step of a booking's money (the `payments.booking_money` task).
///
/// Steps of one booking never overlap: each holds a per-booking advisory
/// lock for its whole run (gateway calls included), so a settlement and a
/// dispute's resolution queued moments apart run one after the other and
/// each sees what the other did. The lock lives on its own pooled
/// connection, outside any transaction, so no row stays locked while the
/// gateway is called.
pub async fn run(p: &Payments, task: &MoneyTask) -> PaymentResult<()> {
    let booking_id = match task {
        MoneyTask::Authorize { booking_id }
        | MoneyTask::Capture { booking_id }
        | MoneyTask::Void { booking_id }
        | MoneyTask::CancellationFee { booking_id }
        | MoneyTask::Settle { booking_id }
        | MoneyTask::Resolve { booking_id, .. } => *booking_id,
    };
    let mut lock = p.db().acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1::text, 7413))")
        .bind(booking_id)
        .execute(&mut *lock)
        .await?;
    let result = run_locked(p, booking_id, task).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1::text, 7413))")
        .bind(booking_id)
        .execute(&mut *lock)
        .await;
    if unlocked.is_err() {
        // Never hand a connection holding the lock back to the pool.
        lock.detach();
    }
    result
}

async fn run_locked(p: &Payments, booking_id: Uuid, task: &MoneyTask) -> PaymentResult<()> {
    let Some(intent) = intents::of_booking(&mut *p.db().acquire().await?, booking_id).await? else {
        // Nothing to pay (a free booking).
        return Ok(());
    };
    match task {
        MoneyTask::Authorize { .. } => {
            if intent.status != "authorizing" {
                return Ok(());
            }
            let description = format!("Rentify booking {booking_id}");
            let answer = intents::request_authorization(p, intent.id, false, &description).await?;
            let provider = answer.as_ref().ok().map(|s| s.provider_intent_id.as_str());
            match intents::authorization_outcome(&answer) {
                Some(outcome) => {
                    p.booking_saga()?
                        .authorization_decided(intent.id, outcome, provider)
                        .await?
                }
                None => return Err(PaymentError::ProviderUnavailable),
            }
        }
        MoneyTask::Capture { .. } => match intent.status.as_str() {
            "authorized" => {
                intents::capture(p, intent.id).await?;
            }
            "captured" => {}
            other => tracing::warn!(booking.id = %booking_id, status = other, "nothing to capture"),
        },
        MoneyTask::Void { .. } => {
            if claim_void(p, booking_id, intent.id).await? {
                intents::void(p, intent.id).await?;
            }
        }
        MoneyTask::CancellationFee { .. } => cancellation_fee(p, booking_id, &intent).await?,
        // A completed booking only: a disputed one waits for its
        // resolution, which settles it (`resolve`).
        MoneyTask::Settle { .. } => settle(p, booking_id, &["completed"]).await?,
        MoneyTask::Resolve {
            refund,
            deposit_capture,
            ..
        } => resolve(p, booking_id, *refund, *deposit_capture).await?,
    }
    Ok(())
}

/// Claims an intent for release (`voiding`) under its lock, unless its
/// booking holds its unit again (a late success recovered it): from then
/// on a success report cannot revive the booking. `true` to go on.
async fn claim_void(p: &Payments, booking_id: Uuid, intent_id: Uuid) -> PaymentResult<bool> {
    let mut tx = p.db().begin().await?;
    // The booking first, then the intent: the saga's lock order.
    let facts: BookingFacts =
        sqlx::query_as("SELECT status, owner_id FROM bookings WHERE id = $1 FOR UPDATE")
            .bind(booking_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(PaymentError::NotFound)?;
    let intent = intents::lock(&mut tx, intent_id).await?;
    let released = matches!(facts.status.as_str(), "cancelled" | "declined");
    let go = match intent.status.as_str() {
        "voiding" => true,
        "authorizing" | "expired" => released,
        "authorized" => released,
        _ => false,
    };
    if go && intent.status != "voiding" {
        sqlx::query(
            "UPDATE payment_intents SET status = 'voiding', updated_at = now() WHERE id = $1",
        )
        .bind(intent_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(go)
}

async fn cancellation_fee(
    p: &Payments,
    booking_id: Uuid,
    intent: &intents::Intent,
) -> PaymentResult<()> {
    let kept = net(&mut *p.db().acquire().await?, booking_id)
        .await?
        .price();
    match intent.status.as_str() {
        "authorized" if kept <= 0 => {
            intents::void(p, intent.id).await?;
        }
        "authorized" => {
            let state = p
                .gateway()
                .capture(&format!("capture:{}", intent.id), intent.id, kept)
                .await?;
            intents::apply_state(p, intent.id, &state).await?;
            settle(p, booking_id, &["cancelled"]).await?;
        }
        "captured" => settle(p, booking_id, &["cancelled"]).await?,
        "authorizing" | "expired" => {
            intents::void(p, intent.id).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Settles a booking's escrow once, if it is in one of `statuses`: one
/// transfer escrow → owner's wallet + platform revenue, then the deposit
/// (what is left of it) back to the card. In that order: a dispute opened
/// before the settlement commits stops it with the deposit still held (the
/// resolution may take it); once settled, the deposit is the renter's, and
/// a retry after a failed refund finishes returning it.
async fn settle(p: &Payments, booking_id: Uuid, statuses: &[&str]) -> PaymentResult<()> {
    let mut conn = p.db().acquire().await?;
    let facts = booking_facts(&mut conn, booking_id).await?;
    let settled = settlement_exists(&mut conn, booking_id).await?;
    if !settled && !statuses.contains(&facts.status.as_str()) {
        return Ok(());
    }
    let Some(mut intent) = intents::of_booking(&mut conn, booking_id).await? else {
        return Ok(());
    };
    drop(conn);
    if !settled {
        if intent.status == "authorized" {
            intent = intents::capture(p, intent.id).await?;
        }
        if intent.status != "captured" {
            return Err(PaymentError::InvalidState(intent.status));
        }
        if !settle_escrow(p, booking_id, &facts, &intent, statuses).await? {
            return Ok(());
        }
    }
    release_deposit(p, booking_id, &intent).await
}

/// The settlement transfer and its record, under the booking's lock;
/// `false` when the booking left `statuses` meanwhile (a dispute).
async fn settle_escrow(
    p: &Payments,
    booking_id: Uuid,
    facts: &BookingFacts,
    intent: &intents::Intent,
    statuses: &[&str],
) -> PaymentResult<bool> {
    let currency = intent.currency.clone();
    let escrow = p.accounts().house(AccountKind::Escrow, &currency).await?;
    let revenue = p
        .accounts()
        .house(AccountKind::PlatformRevenue, &currency)
        .await?;
    let wallet = p.accounts().wallet(facts.owner_id, &currency).await?;
    let mut tx = p.db().begin().await?;
    // The booking's lock (then the intent's, the saga's order): a dispute
    // opened meanwhile stops the settlement; the resolution settles.
    let status: String = sqlx::query_scalar("SELECT status FROM bookings WHERE id = $1 FOR UPDATE")
        .bind(booking_id)
        .fetch_one(&mut *tx)
        .await?;
    intents::lock(&mut tx, intent.id).await?;
    if !statuses.contains(&status.as_str()) || settlement_exists(&mut tx, booking_id).await? {
        return Ok(false);
    }
    let (captured_deposit, released) = deposit_used(&mut tx, booking_id).await?;
    let deposit_back = if intent.deposit_transfer_id.is_some() {
        (intent.deposit - captured_deposit - released).max(0)
    } else {
        0
    };
    let net = net(&mut tx, booking_id).await?;
    let shares = split(&net, p.commission_bps());
    let total = shares.owner + shares.platform;
    let mut transfer_id = Uuid::nil();
    if total > 0 {
        transfer_id = ledger::transfer(
            &mut tx,
            NewTransfer {
                kind: TransferKind::Settlement,
                phase: Phase::Posted,
                currency: &currency,
                legs: vec![
                    Leg {
                        account: escrow,
                        amount: -total,
                    },
                    Leg {
                        account: wallet,
                        amount: shares.owner,
                    },
                    Leg {
                        account: revenue,
                        amount: shares.platform,
                    },
                ],
                booking_id: Some(booking_id),
                user_id: Some(facts.owner_id),
                intent_id: Some(intent.id),
                provider_ref: None,
                description: "escrow settled to the owner and the platform",
            },
        )
        .await?;
    }
    if shares.commission > 0 {
        sqlx::query(
            "INSERT INTO booking_line_items (booking_id, kind, amount, source)
             VALUES ($1, 'commission', $2, 'settlement')",
        )
        .bind(booking_id)
        .bind(shares.commission)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO booking_settlements (booking_id, owner_id, currency, owner_amount,
                                          platform_amount, deposit_released, deposit_captured, transfer_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(booking_id)
    .bind(facts.owner_id)
    .bind(&currency)
    .bind(shares.owner)
    .bind(shares.platform)
    .bind(released + deposit_back)
    .bind(captured_deposit)
    .bind(transfer_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("payments_settlements_total").increment(1);
    Ok(true)
}

/// Returns to the card what is left of a settled booking's deposit (once,
/// with a key derived from the booking).
async fn release_deposit(
    p: &Payments,
    booking_id: Uuid,
    intent: &intents::Intent,
) -> PaymentResult<()> {
    if intent.deposit_transfer_id.is_none() {
        return Ok(());
    }
    let (captured, released) = deposit_used(&mut *p.db().acquire().await?, booking_id).await?;
    let back = intent.deposit - captured - released;
    if back > 0 {
        intents::refund(
            p,
            intent.id,
            &format!("deposit_release:{booking_id}"),
            back,
            TransferKind::DepositRelease,
            AccountKind::DepositsHeld,
        )
        .await?;
    }
    Ok(())
}

/// What of a booking's deposit was captured for damage and released to
/// the card so far.
async fn deposit_used(conn: &mut PgConnection, booking_id: Uuid) -> PaymentResult<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT coalesce(sum(amount) FILTER (WHERE kind = 'deposit_capture'), 0)::bigint,
                coalesce(sum(amount) FILTER (WHERE kind = 'deposit_release'), 0)::bigint
           FROM ledger_transfers
          WHERE booking_id = $1 AND kind IN ('deposit_capture', 'deposit_release')
            AND status = 'posted'",
    )
    .bind(booking_id)
    .fetch_one(conn)
    .await?)
}

/// Whether a booking's escrow was settled (the deposit is then back on
/// the card: a resolution can no longer take it).
pub async fn is_settled(conn: &mut PgConnection, booking_id: Uuid) -> PaymentResult<bool> {
    settlement_exists(conn, booking_id).await
}

/// A dispute was opened (in the dispute's transaction). Before settlement
/// nothing moves: settlement waits for the resolution. After it, the
/// owner's earnings from the booking (what is left of them in the wallet)
/// are held by a pending transfer, so they cannot be paid out meanwhile.
pub async fn on_dispute(
    p: &Payments,
    conn: &mut PgConnection,
    booking_id: Uuid,
) -> PaymentResult<()> {
    let settled: Option<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT owner_id, currency::text, owner_amount FROM booking_settlements WHERE booking_id = $1",
    )
    .bind(booking_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((owner_id, currency, earned)) = settled else {
        return Ok(());
    };
    let balance = ledger::wallet_balance(conn, owner_id, &currency).await?;
    let hold = earned.min(balance.available);
    if hold <= 0 {
        return Ok(());
    }
    let wallet = p.accounts().wallet(owner_id, &currency).await?;
    let escrow = p.accounts().house(AccountKind::Escrow, &currency).await?;
    let t = NewTransfer::between(
        TransferKind::DisputeHold,
        Phase::Pending,
        &currency,
        wallet,
        escrow,
        hold,
    )
    .booking(booking_id)
    .user(owner_id)
    .describe("earnings held while the dispute is open");
    match ledger::transfer(conn, t).await {
        // Spent in the meantime: nothing to hold.
        Err(ledger::LedgerError::InsufficientFunds) => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// A dispute's resolution: `refund` back to the renter's card and
/// `deposit_capture` of the deposit to the owner for damage, then the
/// booking settles (or, when it was settled already, the refund is taken
/// back from the owner's held earnings, the platform covering the rest).
async fn resolve(
    p: &Payments,
    booking_id: Uuid,
    refund: i64,
    deposit_capture: i64,
) -> PaymentResult<()> {
    let mut conn = p.db().acquire().await?;
    let Some(mut intent) = intents::of_booking(&mut conn, booking_id).await? else {
        return Ok(());
    };
    let facts = booking_facts(&mut conn, booking_id).await?;
    let settled = settlement_exists(&mut conn, booking_id).await?;
    drop(conn);
    if intent.status == "authorized" {
        intent = intents::capture(p, intent.id).await?;
    }
    if intent.status != "captured" {
        return Err(PaymentError::InvalidState(intent.status));
    }
    let currency = intent.currency.clone();
    let escrow = p.accounts().house(AccountKind::Escrow, &currency).await?;
    if !settled {
        // Deposit for damage, once, from what is still held.
        let (captured_before, released) =
            deposit_used(&mut *p.db().acquire().await?, booking_id).await?;
        let capture = deposit_capture.clamp(0, (intent.deposit - released).max(0));
        if capture > 0 && captured_before == 0 && intent.deposit_transfer_id.is_some() {
            let held = p
                .accounts()
                .house(AccountKind::DepositsHeld, &currency)
                .await?;
            let wallet = p.accounts().wallet(facts.owner_id, &currency).await?;
            let mut tx = p.db().begin().await?;
            intents::lock(&mut tx, intent.id).await?;
            if deposit_used(&mut tx, booking_id).await?.0 == 0 {
                let t = NewTransfer::between(
                    TransferKind::DepositCapture,
                    Phase::Posted,
                    &currency,
                    held,
                    wallet,
                    capture,
                )
                .booking(booking_id)
                .user(facts.owner_id)
                .intent(intent.id)
                .describe("deposit captured for damage");
                ledger::transfer(&mut tx, t).await?;
            }
            tx.commit().await?;
        }
        refund_once(p, booking_id, &intent, refund).await?;
        settle(p, booking_id, &["resolved"]).await?;
        return Ok(());
    }
    // Settled before the dispute: release the hold, take the refund back
    // from the owner's earnings (the platform covers what they spent).
    let mut tx = p.db().begin().await?;
    intents::lock(&mut tx, intent.id).await?;
    let holds: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT id, amount FROM ledger_transfers
          WHERE booking_id = $1 AND kind = 'dispute_hold' AND status = 'pending'",
    )
    .bind(booking_id)
    .fetch_all(&mut *tx)
    .await?;
    let clawed_back: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM ledger_transfers
          WHERE booking_id = $1 AND kind = 'dispute_clawback'",
    )
    .bind(booking_id)
    .fetch_one(&mut *tx)
    .await?;
    // Once taken back, the amount is fixed (a retry refunds exactly it).
    let wanted = if clawed_back > 0 {
        clawed_back
    } else {
        refund.clamp(0, intent.amount_captured - intent.amount_refunded)
    };
    if clawed_back == 0 && wanted > 0 {
        let held: i64 = holds.iter().map(|(_, a)| a).sum();
        for (id, _) in &holds {
            ledger::void(&mut tx, *id).await?;
        }
        let from_owner = wanted.min(held);
        let from_platform = wanted - from_owner;
        let wallet = p.accounts().wallet(facts.owner_id, &currency).await?;
        let revenue = p
            .accounts()
            .house(AccountKind::PlatformRevenue, &currency)
            .await?;
        ledger::transfer(
            &mut tx,
            NewTransfer {
                kind: TransferKind::DisputeClawback,
                phase: Phase::Posted,
                currency: &currency,
                legs: vec![
                    Leg {
                        account: wallet,
                        amount: -from_owner,
                    },
                    Leg {
                        account: revenue,
                        amount: -from_platform,
                    },
                    Leg {
                        account: escrow,
                        amount: wanted,
                    },
                ],
                booking_id: Some(booking_id),
                user_id: Some(facts.owner_id),
                intent_id: Some(intent.id),
                provider_ref: None,
                description: "refund after settlement, taken back for the renter",
            },
        )
        .await?;
    } else {
        for (id, _) in &holds {
            ledger::void(&mut tx, *id).await?;
        }
    }
    tx.commit().await?;
    if wanted > 0 {
        intents::refund(
            p,
            intent.id,
            &format!("dispute_refund:{booking_id}"),
            wanted,
            TransferKind::Refund,
            AccountKind::Escrow,
        )
        .await?;
    }
    Ok(())
}

/// A resolution's refund before settlement: negative line items (once),
/// then the money back to the card from escrow.
async fn refund_once(
    p: &Payments,
    booking_id: Uuid,
    intent: &intents::Intent,
    refund: i64,
) -> PaymentResult<i64> {
    if refund <= 0 {
        return Ok(0);
    }
    let mut tx = p.db().begin().await?;
    intents::lock(&mut tx, intent.id).await?;
    let recorded: Option<i64> = sqlx::query_scalar(
        "SELECT -sum(amount)::bigint FROM booking_line_items WHERE booking_id = $1 AND source = 'dispute'",
    )
    .bind(booking_id)
    .fetch_one(&mut *tx)
    .await?;
    let amount = match recorded {
        Some(amount) => amount,
        None => {
            let current = net(&mut tx, booking_id).await?;
            let parts = refund_components(&current, refund);
            insert_items(&mut tx, booking_id, &parts, -1, "dispute").await?;
            parts.price()
        }
    };
    tx.commit().await?;
    intents::refund(
        p,
        intent.id,
        &format!("dispute_refund:{booking_id}"),
        amount,
        TransferKind::Refund,
        AccountKind::Escrow,
    )
    .await?;
    Ok(amount)
}

/// One of a booking's transactions, in the seed's terms.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Transaction {
    pub id: Uuid,
    #[schema(example = "transaction")]
    #[sqlx(skip)]
    pub object: &'static str,
    pub booking_id: Uuid,
    /// `charge`, `refund`, `deposit_hold`, `deposit_release`, `payout` (the
    /// settlement to the owner), or the ledger's finer kinds
    /// (`deposit_capture`, `dispute_hold`, `dispute_clawback`).
    #[sqlx(rename = "kind")]
    #[serde(rename = "type")]
    pub transaction_type: String,
    pub amount: i64,
    pub currency: String,
    /// `pending` (a hold), `completed`, or `voided` (a released hold).
    pub status: String,
    /// The gateway's reference (intent, refund), when there is one.
    pub provider_id: Option<String>,
    pub description: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A booking's ledger transfers, oldest first.
pub async fn transactions(
    conn: &mut PgConnection,
    booking_id: Uuid,
) -> PaymentResult<Vec<Transaction>> {
    let mut rows: Vec<Transaction> = sqlx::query_as(
        "SELECT id, booking_id,
                CASE kind WHEN 'settlement' THEN 'payout' ELSE kind END AS kind,
                amount, currency::text AS currency,
                CASE status WHEN 'posted' THEN 'completed' ELSE status END AS status,
                provider_ref AS provider_id, description, created_at
           FROM ledger_transfers WHERE booking_id = $1 ORDER BY created_at, id",
    )
    .bind(booking_id)
    .fetch_all(conn)
    .await?;
    for row in &mut rows {
        row.object = "transaction";
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_payin_covers_the_payout_and_the_platform(
            rental in 0i64..10_000_000, delivery in 0i64..100_000, protection in 0i64..1_000_000,
            service_fee in 0i64..1_000_000, bps in 0i64..5_000, refund in 0i64..20_000_000,
        ) {
            let charged = Charges { rental, delivery, protection, service_fee, deposit: 0 };
            let back = refund_components(&charged, refund);
            prop_assert!(back.price() <= charged.price());
            prop_assert_eq!(back.price(), refund.min(charged.price()));
            let net = Charges {
                rental: rental - back.rental,
                delivery: delivery - back.delivery,
                protection: protection - back.protection,
                service_fee: service_fee - back.service_fee,
                deposit: 0,
            };
            let s = split(&net, bps);
            prop_assert_eq!(s.owner + s.platform, net.price());
            prop_assert!(s.owner >= 0 && s.platform >= 0 && s.commission >= 0);
            prop_assert!(s.owner <= net.rental + net.delivery);
        }
    }

    #[test]
    fn commission_comes_off_the_owners_share() {
        let net = Charges {
            rental: 10_000,
            delivery: 1_000,
            protection: 500,
            service_fee: 1_100,
            deposit: 0,
        };
        assert_eq!(
            split(&net, 300),
            Split {
                owner: 10_670,
                platform: 1_930,
                commission: 330
            }
        );
    }
}
