//! What a notification is, over the API and in storage.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

/// An outside channel a notification may also go through; the in-app
/// channel is not one of them because it is always on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationChannel)]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }

    pub fn parse(value: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// What a notification is about; preferences are set per channel and category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationCategory)]
pub enum Category {
    Bookings,
    Payments,
    Reviews,
    Account,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Bookings,
        Category::Payments,
        Category::Reviews,
        Category::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Bookings => "bookings",
            Category::Payments => "payments",
            Category::Reviews => "reviews",
            Category::Account => "account",
        }
    }

    pub fn parse(value: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// Where a delivery is (see the migration for the exact meaning of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationDeliveryStatus)]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Queued,
    /// Accepted by the provider (an SMTP server): on its way, not confirmed.
    Sent,
    /// The provider confirmed the delivery.
    Delivered,
    /// Every attempt failed, or one failed for good.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<DeliveryStatus> {
        [Self::Queued, Self::Sent, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// A delivery of a notification through one outside channel, as its owner
/// sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = NotificationDelivery)]
pub struct DeliverySummary {
    pub channel: Channel,
    pub status: DeliveryStatus,
    /// Attempts made so far (a queued delivery with attempts is being retried).
    pub attempts: i32,
}

/// Something a user was told. Always in the app; also by email, SMS or push
/// as the user's preferences say (`deliveries`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Notification {
    pub id: Uuid,
    #[schema(example = "notification")]
    pub object: &'static str,
    /// The event that caused it (`booking.approved`, …) or `review_prompt`.
    #[serde(rename = "type")]
    #[schema(example = "booking.approved")]
    pub notification_type: String,
    pub category: Category,
    pub title: String,
    pub body: String,
    /// What it is about: `booking_id`, `listing_id`, the recipient's `role`, …
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Critical notifications (payment failed, booking cancelled) are sent
    /// even during quiet hours.
    pub critical: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub deliveries: Vec<DeliverySummary>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    #[sqlx(rename = "type")]
    pub notification_type: String,
    pub category: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub critical: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str =
    "id, user_id, type, category, title, body, data, critical, read_at, created_at";

impl NotificationRow {
    pub fn view(self, deliveries: Vec<DeliverySummary>) -> Notification {
        Notification {
            id: self.id,
            object: "notification",
            notification_type: self.notification_type,
            // The table's CHECK allows only the four categories.
            category: Category::parse(&self.category).unwrap_or(Category::Account),
            title: self.title,
            body: self.body,
            data: self.data,
            critical: self.critical,
            read_at: self.read_at,
            created_at: self.created_at,
            deliveries,
        }
    }
}

/// The notifications of `rows` with their deliveries, in the rows' order.
pub(crate) async fn with_deliveries(
    conn: &mut PgConnection,
    rows: Vec<NotificationRow>,
) -> sqlx::Result<Vec<Notification>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let deliveries: Vec<(Uuid, String, String, i32)> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT notification_id, channel, status, attempts FROM notification_deliveries
              WHERE notification_id = ANY($1) ORDER BY notification_id, channel",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let mine = deliveries
                .iter()
                .filter(|(id, ..)| *id == row.id)
                .filter_map(|(_, channel, status, attempts)| {
                    Some(DeliverySummary {
                        channel: Channel::parse(channel)?,
                        status: DeliveryStatus::parse(status)?,
                        attempts: *attempts,
                    })
                })
                .collect();
            row.view(mine)
        })
        .collect())
}

/// One notification of `user_id`, with its deliveries.
pub(crate) async fn find(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Notification>> {
    let row: Option<NotificationRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(with_deliveries(conn, vec![row]).await?.pop()),
        None => Ok(None),
    }
}

/// `user_id`'s notifications made after `after` (ids grow with time), oldest
/// first, at most `limit`.
pub(crate) async fn since(
    conn: &mut PgConnection,
    user_id: Uuid,
    after: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Notification>> {
    let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    with_deliveries(conn, rows).await
}
