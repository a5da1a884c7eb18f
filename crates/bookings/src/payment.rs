//! The booking payment saga (RentEzy): a booking with something to pay is
//! placed `pending_payment`, holding its unit, while the card is
//! authorized. The authorization's answer arrives by the call, by a webhook,
//! or not at all:
//!
//! ```text
//! pending_payment ─ authorized ─→ requested (or approved, instant book)
//!        │        ─ declined ───→ cancelled (the gateway's reason)
//!        └─ PAYMENTS_HOLD_TIMEOUT_SECS ─→ cancelled (payment_timeout),
//!             unit released, intent `expired`, its authorization voided
//! cancelled (payment_timeout) ─ late success ─→ requested/approved if a
//!             unit is still free (payment_recovered), else voided
//! ```
//!
//! Exactly one outcome: every path locks the booking, then its intent, and
//! acts only from the statuses it expects. The timer's void first claims
//! the intent (`voiding`) under that lock, so a success arriving meanwhile
//! cannot revive a booking whose authorization is being released.

use std::sync::{Arc, Weak};

use chrono::{DateTime, Duration, Utc};
use rentify_listings::{inventory, terms};
use rentify_payments::{
    BookingSaga, PaymentError, PaymentJobs, Payments,
    escrow::{self, Charges},
    gateway::PaymentGateway,
    intents,
    jobs::MoneyTask,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    Bookings, Inner,
    error::{BookingError, BookingResult},
    model::{BookingQuery, BookingRow, COLUMNS},
    pricing::Fees,
    service,
    state::Status,
};

/// What a booking charges, by component, from its immutable price.
pub fn charges(row: &BookingRow) -> Charges {
    let fees: Fees = serde_json::from_value(row.fees.clone()).unwrap_or_default();
    Charges {
        rental: row.subtotal,
        delivery: fees.delivery_fee,
        protection: fees.insurance,
        service_fee: fees.service_fee,
        deposit: row.deposit,
    }
}

/// The bookings module's side of the saga, registered with payments.
pub(crate) struct Saga {
    pub(crate) bookings: Weak<Inner>,
}

#[async_trait::async_trait]
impl BookingSaga for Saga {
    async fn authorization_decided(
        &self,
        intent_id: Uuid,
        outcome: Result<(), (String, String)>,
        provider_intent_id: Option<&str>,
    ) -> anyhow::Result<()> {
        let inner = self
            .bookings
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("the bookings module is gone"))?;
        let b = Bookings { inner };
        decide(&b, intent_id, outcome, provider_intent_id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

impl Bookings {
    pub(crate) fn saga(self: &Bookings) -> Arc<Saga> {
        Arc::new(Saga {
            bookings: Arc::downgrade(&self.inner),
        })
    }
}

/// What became of the booking.
pub enum Decided {
    /// The booking as it is now.
    Booking(Box<BookingRow>),
    /// Declined by the gateway: (code, message) and the cancelled booking.
    Declined(String, String, Box<BookingRow>),
}

async fn lock_booking(conn: &mut PgConnection, id: Uuid) -> BookingResult<BookingRow> {
    sqlx::query_as::<_, BookingRow>(&format!(
        "SELECT {COLUMNS} FROM bookings WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(BookingError::NotFound)
}

/// Applies an authorization's answer to its booking (all three paths: the
/// call, the webhook, a late webhook). `key` is the booking's
/// Idempotency-Key context when the answer comes from the create call, so
/// the stored answer is brought up to date.
pub async fn decide(
    b: &Bookings,
    intent_id: Uuid,
    outcome: Result<(), (String, String)>,
    provider_intent_id: Option<&str>,
) -> BookingResult<Decided> {
    let p = b.payments();
    let booking_id = intents::get(&mut *b.db().acquire().await?, intent_id)
        .await
        .map_err(payment_error)?
        .booking_id
        .ok_or(BookingError::NotFound)?;
    let mut tx = b.db().begin().await?;
    let booking = lock_booking(&mut tx, booking_id).await?;
    let intent = intents::lock(&mut tx, intent_id)
        .await
        .map_err(payment_error)?;
    let mut late_void = false;
    let before = (booking.status.clone(), booking.version);
    let decided = match outcome {
        Ok(()) => match (booking.status.as_str(), intent.status.as_str()) {
            ("pending_payment", "authorizing") => Decided::Booking(Box::new(
                authorized(b, &mut tx, &booking, &intent, provider_intent_id, false).await?,
            )),
            ("cancelled", "expired") => Decided::Booking(Box::new(
                recover(b, &mut tx, &booking, &intent, provider_intent_id).await?,
            )),
            // We released this authorization already (or were releasing
            // it): the gateway's late success is voided again.
            (_, "voided" | "failed") => {
                late_void = true;
                Decided::Booking(Box::new(booking))
            }
            _ => Decided::Booking(Box::new(booking)),
        },
        Err((code, message)) => match (booking.status.as_str(), intent.status.as_str()) {
            ("pending_payment", "authorizing") => {
                intents::record_failed(&mut tx, &intent, &code, &message)
                    .await
                    .map_err(payment_error)?;
                let row = cancel_unpaid(&mut tx, &booking, &code).await?;
                Decided::Declined(code, message, Box::new(row))
            }
            (_, "expired" | "voiding") => {
                intents::record_failed(&mut tx, &intent, &code, &message)
                    .await
                    .map_err(payment_error)?;
                Decided::Booking(Box::new(booking))
            }
            _ => Decided::Booking(Box::new(booking)),
        },
    };
    // Only this decision's own change is remembered (a duplicate report
    // must not overwrite the decline with the cancelled booking).
    let row = match &decided {
        Decided::Booking(row) | Decided::Declined(_, _, row) => row,
    };
    if (row.status.clone(), row.version) != before {
        remember_answer(&mut tx, &decided).await?;
    }
    tx.commit().await?;
    if late_void {
        p.gateway()
            .void(&format!("late-void:{intent_id}"), intent_id)
            .await
            .map_err(|e| payment_error(PaymentError::from(e)))?;
    }
    Ok(decided)
}

/// Brings the stored answer of the booking's Idempotency-Key up to date
/// when the saga decides after the create call answered (`202`): a retry
/// then sees the booking as it is, or the decline.
async fn remember_answer(tx: &mut PgConnection, decided: &Decided) -> BookingResult<()> {
    let (row, status, body) = match decided {
        Decided::Booking(row) if row.status != Status::PendingPayment.as_str() => (
            row,
            201i16,
            serde_json::to_value(row.view(row.renter_id, None)).map_err(anyhow::Error::from)?,
        ),
        Decided::Declined(code, message, row) => {
            let error = rentify_platform::ApiError::from(PaymentError::Declined {
                code: code.clone(),
                message: message.clone(),
            })
            .with_detail(serde_json::json!({"booking_id": row.id}));
            (row, 402, error.envelope_json())
        }
        Decided::Booking(_) => return Ok(()),
    };
    sqlx::query(
        "UPDATE idempotency_keys k SET response_status = $2, response_body = $3
           FROM bookings b
          WHERE b.id = $1 AND b.idempotency_key IS NOT NULL
            AND k.principal = b.renter_id::text AND k.key = b.idempotency_key",
    )
    .bind(row.id)
    .bind(status)
    .bind(body)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn payment_error(error: PaymentError) -> BookingError {
    BookingError::Api(error.into())
}

/// `pending_payment` (or a timed-out booking being recovered) →
/// `requested`, or `approved` for an instant-book listing: the hold is in
/// the ledger, the line items recorded, the approval timer armed.
async fn authorized(
    b: &Bookings,
    tx: &mut PgConnection,
    booking: &BookingRow,
    intent: &intents::Intent,
    provider_intent_id: Option<&str>,
    recovered: bool,
) -> BookingResult<BookingRow> {
    let p = b.payments();
    intents::record_authorized(p, tx, intent, provider_intent_id)
        .await
        .map_err(payment_error)?;
    escrow::record_charges(tx, booking.id, &charges(booking))
        .await
        .map_err(payment_error)?;
    let instant: bool = sqlx::query_scalar("SELECT instant_book FROM listings WHERE id = $1")
        .bind(booking.listing_id)
        .fetch_one(&mut *tx)
        .await?;
    let now = Utc::now();
    let (to, approval_expires_at, approved_at) = if instant {
        (Status::Approved, None, Some(now))
    } else {
        (Status::Requested, Some(now + b.approval_window()), None)
    };
    let reason = recovered.then_some("payment_recovered");
    let row: BookingRow = sqlx::query_as(&format!(
        "UPDATE bookings SET status = $2, status_reason = $3, approval_expires_at = $4,
                approved_at = $5, payment_expires_at = NULL, version = version + 1, updated_at = now()
          WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(booking.id)
    .bind(to.as_str())
    .bind(reason)
    .bind(approval_expires_at)
    .bind(approved_at)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE availability_windows SET hold_expires_at = $2
          WHERE booking_id = $1 AND status = 'booked'",
    )
    .bind(booking.id)
    .bind(approval_expires_at)
    .execute(&mut *tx)
    .await?;
    let event = if instant {
        "booking.approved"
    } else {
        "booking.requested"
    };
    service::record_transition(tx, &row, event, Some(&booking.status), None, reason).await?;
    if let Some(deadline) = approval_expires_at {
        service::enqueue_approval_timer(b, tx, row.id, deadline).await?;
    }
    Ok(row)
}

/// A success after the payment timer cancelled the booking: take a unit
/// again if one is free for the booking's time, else release the money.
async fn recover(
    b: &Bookings,
    tx: &mut PgConnection,
    booking: &BookingRow,
    intent: &intents::Intent,
    provider_intent_id: Option<&str>,
) -> BookingResult<BookingRow> {
    if booking.status_reason.as_deref() != Some("payment_timeout") {
        return Ok(booking.clone());
    }
    let terms = terms::booking_terms(tx, booking.listing_id, false)
        .await?
        .ok_or(BookingError::NotFound)?;
    let mut claimed = None;
    let units =
        std::iter::once(booking.unit).chain((0..terms.quantity).filter(|u| *u != booking.unit));
    for unit in units {
        if inventory::claim_exact(
            tx,
            &terms,
            unit,
            booking.start_time,
            booking.end_time,
            booking.id,
            None,
        )
        .await?
        {
            claimed = Some(unit);
            break;
        }
    }
    let Some(unit) = claimed else {
        // Taken meanwhile: the hold goes into the ledger and is voided at
        // the gateway and in the ledger by the money task.
        intents::record_authorized(b.payments(), tx, intent, provider_intent_id)
            .await
            .map_err(payment_error)?;
        b.payments()
            .jobs()
            .enqueue(
                tx,
                &MoneyTask::Void {
                    booking_id: booking.id,
                },
            )
            .await?;
        return Ok(booking.clone());
    };
    sqlx::query("UPDATE bookings SET unit = $2 WHERE id = $1")
        .bind(booking.id)
        .bind(unit)
        .execute(&mut *tx)
        .await?;
    let booking = BookingRow {
        unit,
        ..booking.clone()
    };
    authorized(b, tx, &booking, intent, provider_intent_id, true).await
}

/// A declined authorization: the booking is cancelled with the gateway's
/// reason and its unit released.
async fn cancel_unpaid(
    tx: &mut PgConnection,
    booking: &BookingRow,
    reason: &str,
) -> BookingResult<BookingRow> {
    let row: BookingRow = sqlx::query_as(&format!(
        "UPDATE bookings SET status = 'cancelled', status_reason = $2, payment_expires_at = NULL,
                version = version + 1, updated_at = now()
          WHERE id = $1 AND status = 'pending_payment'
         RETURNING {COLUMNS}"
    ))
    .bind(booking.id)
    .bind(reason)
    .fetch_one(&mut *tx)
    .await?;
    inventory::release(tx, booking.id).await?;
    service::record_transition(
        tx,
        &row,
        "booking.payment_failed",
        Some(Status::PendingPayment.as_str()),
        None,
        Some(reason),
    )
    .await?;
    Ok(row)
}

/// Cancels the unpaid bookings in `filter` whose payment hold expired
/// (`payment_timeout`): units released, intents `expired`, and a money
/// task to void each authorization. Idempotent.
pub(crate) async fn expire_unpaid_where(
    money: &PaymentJobs,
    conn: &mut PgConnection,
    filter: &str,
    bind: impl FnOnce(BookingQuery<'_>) -> BookingQuery<'_>,
) -> BookingResult<usize> {
    let sql = format!(
        "WITH overdue AS (
            SELECT b.id AS overdue_id FROM bookings b
             WHERE {filter} AND b.status = 'pending_payment' AND b.payment_expires_at <= now()
             ORDER BY b.id
               FOR UPDATE
        ), done AS (
            UPDATE bookings SET status = 'cancelled', status_reason = 'payment_timeout',
                   version = version + 1, updated_at = now()
              FROM overdue WHERE id = overdue.overdue_id AND status = 'pending_payment'
            RETURNING {COLUMNS}
        ), released AS (
            DELETE FROM availability_windows w USING done
             WHERE w.booking_id = done.id AND w.status = 'booked'
        ), expired AS (
            UPDATE payment_intents i SET status = 'expired', updated_at = now()
              FROM done WHERE i.booking_id = done.id AND i.status = 'authorizing'
        )
        SELECT * FROM done"
    );
    let rows = bind(sqlx::query_as::<_, BookingRow>(&sql))
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        service::record_transition(
            conn,
            row,
            "booking.cancelled",
            Some(Status::PendingPayment.as_str()),
            None,
            Some("payment_timeout"),
        )
        .await?;
        money
            .enqueue(conn, &MoneyTask::Void { booking_id: row.id })
            .await?;
    }
    Ok(rows.len())
}

/// The booking's payment hold deadline.
pub fn payment_deadline(payments: &Payments, now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::seconds(
        i64::try_from(payments.platform().config.payments_hold_timeout_secs).unwrap_or(900),
    )
}
