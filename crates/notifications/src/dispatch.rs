//! The dispatcher: the `notifications` event consumer turns domain events
//! into notifications, and [`notify`] makes one — the in-app row (always),
//! one delivery per outside channel the user's preferences enable, each with
//! its job, and the live announcement — all in the caller's transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rentify_events::{Context, Event, Handler};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    Notifications,
    jobs::ReviewPrompt,
    live::LiveMessage,
    model::{COLUMNS, Category, Channel, DeliveryStatus, DeliverySummary, NotificationRow},
    preferences::{self, Locale},
    reactions::{self, BookingPayload, Role},
    templates::TemplateContext,
};

/// The consumer's handler.
pub(crate) struct Dispatcher {
    pub notifications: Notifications,
}

#[async_trait::async_trait]
impl Handler for Dispatcher {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        let n = &self.notifications;
        let made = match event.event_type.as_str() {
            "user.registered" => welcome(n, cx.tx, event).await?,
            "user.erased" => {
                if let Some(user_id) = event.uuid("user_id") {
                    erase(cx.tx, user_id).await?;
                }
                Vec::new()
            }
            kind if kind.starts_with("booking.") => booking(n, cx.tx, event).await?,
            _ => Vec::new(),
        };
        if let Some(after) = n.live().announce(cx.tx, made).await? {
            cx.after_commit(after);
        }
        Ok(())
    }
}

/// What a notification's texts say, before they are put in the
/// recipient's language.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    pub role: Option<Role>,
    pub actor: Option<&'static str>,
    pub by_you: bool,
    pub listing_title: Option<String>,
    /// The listing's: dates are shown as the parties live them.
    pub time_zone: Option<Tz>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub total: Option<(i64, String)>,
    pub refund: Option<(i64, String)>,
    pub reason: Option<String>,
    pub new_end: Option<DateTime<Utc>>,
}

impl Facts {
    fn context(&self, locale: Locale) -> TemplateContext {
        let time =
            |at: &Option<DateTime<Utc>>| at.map(|at| format_time(at, self.time_zone, locale));
        let money = |m: &Option<(i64, String)>| {
            m.as_ref()
                .map(|(amount, currency)| format_money(*amount, currency, locale))
        };
        TemplateContext {
            locale: locale.as_str(),
            role: self.role.map(Role::as_str),
            actor: self.actor,
            by_you: self.by_you,
            listing_title: self.listing_title.clone(),
            start: time(&self.start),
            end: time(&self.end),
            total: money(&self.total),
            refund: money(&self.refund),
            reason: self.reason.clone(),
            new_end: time(&self.new_end),
            subject: None,
        }
    }
}

/// `2026-01-10 10:00 (Europe/Paris)`; French day-first.
fn format_time(at: DateTime<Utc>, time_zone: Option<Tz>, locale: Locale) -> String {
    let tz = time_zone.unwrap_or(Tz::UTC);
    let local = at.with_timezone(&tz);
    let pattern = match locale {
        Locale::En => "%Y-%m-%d %H:%M",
        Locale::Fr => "%d/%m/%Y %H:%M",
    };
    format!("{} ({})", local.format(pattern), tz.name())
}

/// Currencies without minor units (ISO 4217 exponent 0).
const ZERO_DECIMAL: [&str; 8] = ["JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "UGX"];

/// `55.00 EUR`, `55,00 EUR` (amounts are minor units).
fn format_money(amount: i64, currency: &str, locale: Locale) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    if ZERO_DECIMAL.contains(&currency) {
        return format!("{sign}{abs} {currency}");
    }
    let separator = match locale {
        Locale::En => '.',
        Locale::Fr => ',',
    };
    format!("{sign}{}{separator}{:02} {currency}", abs / 100, abs % 100)
}

/// A notification to make.
pub(crate) struct NewNotification<'a> {
    pub user_id: Uuid,
    /// Its `type`: the event type, or `review_prompt`.
    pub kind: &'a str,
    pub template: &'a str,
    pub category: Category,
    pub critical: bool,
    pub event_id: Uuid,
    pub data: serde_json::Value,
    pub facts: Facts,
}

/// Makes one notification on `conn` (the caller's transaction): nothing if
/// it exists already (same event, user and type). Returns what to announce.
pub(crate) async fn notify(
    n: &Notifications,
    conn: &mut PgConnection,
    new: NewNotification<'_>,
) -> anyhow::Result<Option<LiveMessage>> {
    let settings = preferences::load(conn, new.user_id).await?;
    let rendered = n.templates().render(
        new.template,
        settings.locale,
        &new.facts.context(settings.locale),
    )?;
    let row: Option<NotificationRow> = sqlx::query_as(&format!(
        "INSERT INTO notifications
             (id, user_id, type, category, title, body, data, event_id, critical, locale)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT ON CONSTRAINT notifications_once DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(rentify_platform::ids::new_id())
    .bind(new.user_id)
    .bind(new.kind)
    .bind(new.category.as_str())
    .bind(&rendered.subject)
    .bind(&rendered.summary)
    .bind(&new.data)
    .bind(new.event_id)
    .bind(new.critical)
    .bind(settings.locale.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let contact = n
        .identity()
        .contact_details(new.user_id)
        .await
        .map_err(|e| anyhow::anyhow!("contact details of {}: {e}", new.user_id))?;
    let now = Utc::now();
    // Critical notifications leave at once; the others wait for the end of
    // the recipient's quiet hours.
    let deliver_after = if new.critical {
        None
    } else {
        settings.quiet_hours.and_then(|q| q.ends_after(now))
    };
    let delay = deliver_after
        .and_then(|at| (at - now).to_std().ok())
        .unwrap_or_default();
    let mut deliveries = Vec::new();
    for channel in Channel::ALL {
        if !settings.channels.enabled(channel, new.category) {
            continue;
        }
        let email = contact.as_ref().and_then(|c| c.email.clone());
        let phone = contact.as_ref().and_then(|c| c.phone.clone());
        let (recipient, body_text, body_html) = match channel {
            Channel::Email => match email {
                Some(email) => (email, &rendered.text, Some(&rendered.html)),
                None => continue,
            },
            Channel::Sms => match phone {
                Some(phone) => (mask_phone(&phone), &rendered.summary, None),
                None => continue,
            },
            // No device registry yet: the development push transport
            // records it for the user.
            Channel::Push => (format!("user:{}", new.user_id), &rendered.summary, None),
        };
        let delivery_id = rentify_platform::ids::new_id();
        sqlx::query(
            "INSERT INTO notification_deliveries
                 (id, notification_id, channel, recipient, subject, body_text, body_html, deliver_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(delivery_id)
        .bind(row.id)
        .bind(channel.as_str())
        .bind(&recipient)
        .bind(&rendered.subject)
        .bind(body_text)
        .bind(body_html)
        .bind(deliver_after.unwrap_or(now))
        .execute(&mut *conn)
        .await?;
        n.jobs().enqueue_delivery(conn, delivery_id, delay).await?;
        crate::delivery::count(channel, DeliveryStatus::Queued);
        deliveries.push(DeliverySummary {
            channel,
            status: DeliveryStatus::Queued,
            attempts: 0,
        });
    }
    let user_id = row.user_id;
    let notification = row.view(deliveries);
    tracing::debug!(
        notification.id = %notification.id, user.id = %user_id, notification.type = new.kind,
        "notification made"
    );
    Ok(Some(LiveMessage::of(user_id, &notification)))
}

/// `+33612345678` → `+336•••••78`: enough to recognise, not to call.
pub(crate) fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 6 {
        return "•".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "•".repeat(chars.len() - 6))
}

async fn welcome(
    n: &Notifications,
    conn: &mut PgConnection,
    event: &Event,
) -> anyhow::Result<Vec<LiveMessage>> {
    let Some(user_id) = event.uuid("user_id") else {
        return Ok(Vec::new());
    };
    let made = notify(
        n,
        conn,
        NewNotification {
            user_id,
            kind: "user.registered",
            template: "user.registered",
            category: Category::Account,
            critical: false,
            event_id: event.id,
            data: serde_json::json!({}),
            facts: Facts::default(),
        },
    )
    .await?;
    Ok(made.into_iter().collect())
}

/// An erased account keeps nothing here.
async fn erase(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    // Deliveries and development records go with their notification.
    sqlx::query("DELETE FROM notifications WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM notification_preferences WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The listing's title and time zone, through the listings module.
async fn listing_of(
    conn: &mut PgConnection,
    listing_id: Uuid,
) -> anyhow::Result<(Option<String>, Option<Tz>)> {
    let terms = rentify_listings::terms::booking_terms(conn, listing_id, false).await?;
    Ok(match terms {
        Some(terms) => (
            Some(terms.title).filter(|t| !t.is_empty()),
            Some(terms.time_zone),
        ),
        None => (None, None),
    })
}

fn refund_of(booking: &BookingPayload) -> Option<(i64, String)> {
    let refund = booking.refund.as_ref()?;
    let amount = refund.get("total")?.as_i64()?;
    (amount > 0).then(|| (amount, booking.currency.clone()))
}

async fn booking(
    n: &Notifications,
    conn: &mut PgConnection,
    event: &Event,
) -> anyhow::Result<Vec<LiveMessage>> {
    if !reactions::REACTED.contains(&event.event_type.as_str()) {
        return Ok(Vec::new());
    }
    let booking: BookingPayload = serde_json::from_value(event.payload.clone())
        .map_err(|e| anyhow::anyhow!("{} payload: {e}", event.event_type))?;
    let plan = reactions::plan(&event.event_type, &booking);
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let (listing_title, time_zone) = listing_of(conn, booking.listing_id).await?;
    let mut made = Vec::new();
    for planned in &plan {
        let facts = Facts {
            role: Some(planned.role),
            actor: Some(booking.actor()),
            by_you: booking.actor_id == Some(planned.user_id),
            listing_title: listing_title.clone(),
            time_zone,
            start: Some(booking.start_time),
            end: Some(booking.end_time),
            total: Some((booking.total, booking.currency.clone())),
            refund: refund_of(&booking),
            reason: booking.reason.clone(),
            new_end: booking.child_end_time,
        };
        let mut data = serde_json::json!({
            "booking_id": booking.booking_id,
            "listing_id": booking.listing_id,
            "role": planned.role.as_str(),
            "status": booking.status,
            "start_time": booking.start_time,
            "end_time": booking.end_time,
        });
        if let Some(reason) = &booking.reason {
            data["reason"] = reason.clone().into();
        }
        let new = NewNotification {
            user_id: planned.user_id,
            kind: &event.event_type,
            template: planned.template,
            category: planned.category,
            critical: planned.critical,
            event_id: event.id,
            data,
            facts,
        };
        made.extend(notify(n, conn, new).await?);
    }
    // Only the first handling asks for reviews: a redelivery made nothing.
    if event.event_type == "booking.completed" && !made.is_empty() {
        let delay = Duration::from_secs(n.platform().config.notifications_review_prompt_delay_secs);
        let prompt = ReviewPrompt {
            event_id: event.id,
            booking_id: booking.booking_id,
            listing_id: booking.listing_id,
            renter_id: booking.renter_id,
            owner_id: booking.owner_id,
        };
        n.jobs().enqueue_review_prompt(conn, &prompt, delay).await?;
    }
    Ok(made)
}

/// The `notifications.review_prompt` job: both parties asked for a review,
/// in a transaction of its own (so the live announcement follows its commit).
pub(crate) async fn review_prompt(n: &Notifications, prompt: &ReviewPrompt) -> anyhow::Result<()> {
    let mut tx = n.db().begin().await?;
    let (listing_title, time_zone) = listing_of(&mut tx, prompt.listing_id).await?;
    let mut made = Vec::new();
    for (role, user_id, reviewee_id) in [
        (Role::Renter, prompt.renter_id, prompt.owner_id),
        (Role::Owner, prompt.owner_id, prompt.renter_id),
    ] {
        let new = NewNotification {
            user_id,
            kind: "review_prompt",
            template: "review_prompt",
            category: Category::Reviews,
            critical: false,
            event_id: prompt.event_id,
            data: serde_json::json!({
                "booking_id": prompt.booking_id,
                "listing_id": prompt.listing_id,
                "role": role.as_str(),
                "reviewee_id": reviewee_id,
            }),
            facts: Facts {
                role: Some(role),
                listing_title: listing_title.clone(),
                time_zone,
                ..Facts::default()
            },
        };
        made.extend(notify(n, &mut tx, new).await?);
    }
    let after = n.live().announce(&mut tx, made).await?;
    tx.commit().await?;
    if let Some(after) = after {
        after.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_phones_are_formatted() {
        assert_eq!(format_money(5_500, "EUR", Locale::En), "55.00 EUR");
        assert_eq!(format_money(5_505, "EUR", Locale::Fr), "55,05 EUR");
        assert_eq!(format_money(-120, "USD", Locale::En), "-1.20 USD");
        assert_eq!(format_money(3_000, "JPY", Locale::En), "3000 JPY");
        assert_eq!(mask_phone("+33612345678"), "+336••••••78");
        assert_eq!(mask_phone("12345"), "•••••");
    }

    #[test]
    fn times_are_shown_in_the_listing_time_zone() {
        let at: DateTime<Utc> = "2026-01-10T09:00:00Z".parse().unwrap();
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(
            format_time(at, Some(paris), Locale::En),
            "2026-01-10 10:00 (Europe/Paris)"
        );
        assert_eq!(format_time(at, None, Locale::Fr), "10/01/2026 09:00 (UTC)");
    }
}
