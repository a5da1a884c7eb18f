//! One attempt at one delivery (the `notifications.deliver` job).
//!
//! The delivery row is locked for the attempt, so one attempt at a time
//! whatever runs twice (`FOR NO KEY UPDATE`: the development transport
//! records its message, which references the row, from another connection). Success records `sent` or `delivered` (the
//! transport says which). A failure counts the attempt and keeps the
//! error; the delivery stays `queued` and the next attempt is enqueued in
//! the same transaction with exponential back-off, until
//! `NOTIFICATIONS_MAX_ATTEMPTS` attempts (or a permanent failure) make it
//! `failed`. The in-app notification never waits for any of this.
//!
//! Metrics: `notifications_deliveries_total{channel,status}` counts
//! deliveries reaching each status (`queued` when made);
//! `notifications_delivery_failures_total{channel}` counts failed attempts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    Notifications,
    model::{Channel, DeliveryStatus},
    transport::{Outbound, SendError},
};

/// Counts a delivery reaching `status`.
pub(crate) fn count(channel: Channel, status: DeliveryStatus) {
    metrics::counter!(
        "notifications_deliveries_total",
        "channel" => channel.as_str(),
        "status" => status.as_str()
    )
    .increment(1);
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    channel: String,
    status: String,
    attempts: i32,
    recipient: String,
    subject: String,
    body_text: String,
    body_html: Option<String>,
    deliver_after: DateTime<Utc>,
    user_id: Uuid,
}

/// A delivery's due time may be this far ahead of the job (clock skew
/// between processes) and still be attempted.
const EARLY_TOLERANCE: chrono::Duration = chrono::Duration::seconds(1);

/// Makes one attempt at `delivery_id` on `tx` (the job's transaction).
/// `Err` only for failures of ours (the database, identity): the job is
/// then retried as a whole; transport failures are recorded and `Ok`.
pub(crate) async fn attempt(
    n: &Notifications,
    tx: &mut PgConnection,
    delivery_id: Uuid,
) -> anyhow::Result<()> {
    let row: Option<DeliveryRow> = sqlx::query_as(
        "SELECT d.id, d.channel, d.status, d.attempts, d.recipient, d.subject, d.body_text,
                d.body_html, d.deliver_after, n.user_id
           FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id
          WHERE d.id = $1
            FOR NO KEY UPDATE OF d",
    )
    .bind(delivery_id)
    .fetch_optional(&mut *tx)
    .await?;
    // Gone (an erased account, retention) or already settled: nothing to do.
    let Some(row) = row.filter(|r| r.status == DeliveryStatus::Queued.as_str()) else {
        return Ok(());
    };
    let channel = Channel::parse(&row.channel)
        .ok_or_else(|| anyhow::anyhow!("unknown channel {}", row.channel))?;
    let now = Utc::now();
    if row.deliver_after > now + EARLY_TOLERANCE {
        // Not due yet (a duplicate job): come back when it is.
        let wait = (row.deliver_after - now).to_std().unwrap_or_default();
        n.jobs().enqueue_delivery(tx, row.id, wait).await?;
        return Ok(());
    }
    let outcome = match address(n, channel, row.user_id).await? {
        None => Err(SendError::permanent(format!(
            "the user has no {} address any more",
            channel.as_str()
        ))),
        Some(to) => {
            let message = Outbound {
                delivery_id: row.id,
                channel,
                to,
                recipient_label: row.recipient.clone(),
                subject: row.subject.clone(),
                text: row.body_text.clone(),
                html: row.body_html.clone(),
            };
            n.transports().of(channel).send(&message).await
        }
    };
    let attempts = row.attempts + 1;
    match outcome {
        Ok(receipt) => {
            sqlx::query(
                "UPDATE notification_deliveries
                    SET status = $2, attempts = $3, provider_message_id = $4, last_error = NULL,
                        updated_at = now()
                  WHERE id = $1",
            )
            .bind(row.id)
            .bind(receipt.status.as_str())
            .bind(attempts)
            .bind(&receipt.provider_message_id)
            .execute(&mut *tx)
            .await?;
            count(channel, receipt.status);
        }
        Err(error) => {
            metrics::counter!(
                "notifications_delivery_failures_total",
                "channel" => channel.as_str()
            )
            .increment(1);
            let max = n.platform().config.notifications_max_attempts;
            let last = error.permanent || attempts as u32 >= max;
            let retry_in = (!last).then(|| n.retry().next(attempts as u32));
            tracing::warn!(
                delivery.id = %row.id, channel = channel.as_str(), attempts,
                error = %error.message, permanent = error.permanent,
                retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
                "notification delivery failed"
            );
            sqlx::query(
                "UPDATE notification_deliveries
                    SET status = $2, attempts = $3, last_error = $4,
                        deliver_after = now() + make_interval(secs => $5), updated_at = now()
                  WHERE id = $1",
            )
            .bind(row.id)
            .bind(if last {
                DeliveryStatus::Failed.as_str()
            } else {
                DeliveryStatus::Queued.as_str()
            })
            .bind(attempts)
            .bind(&error.message)
            .bind(retry_in.unwrap_or(Duration::ZERO).as_secs_f64())
            .execute(&mut *tx)
            .await?;
            match retry_in {
                Some(delay) => n.jobs().enqueue_delivery(tx, row.id, delay).await?,
                None => count(channel, DeliveryStatus::Failed),
            }
        }
    }
    Ok(())
}

/// Where `channel` reaches `user_id` now (an email changed since the
/// notification was made is honoured; phone numbers are decrypted only here).
async fn address(
    n: &Notifications,
    channel: Channel,
    user_id: Uuid,
) -> anyhow::Result<Option<String>> {
    if channel == Channel::Push {
        return Ok(Some(format!("user:{user_id}")));
    }
    let contact = n
        .identity()
        .contact_details(user_id)
        .await
        .map_err(|e| anyhow::anyhow!("contact details of {user_id}: {e}"))?;
    Ok(contact.and_then(|c| match channel {
        Channel::Email => c.email,
        Channel::Sms => c.phone,
        Channel::Push => None,
    }))
}
