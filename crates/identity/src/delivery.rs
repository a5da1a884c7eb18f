//! The development transport for messages to users (verification links,
//! one-time codes): each message is recorded in `dev_deliveries`, where
//! tests and `make run` read it. The notifications module replaces this
//! with real channels (SMTP, SMS providers) and keeps the same call.

use rentify_platform::ids::new_id;
use uuid::Uuid;

/// A message to hand to a channel.
pub struct Message<'a> {
    pub channel: &'a str,
    pub user_id: Uuid,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Records `message` in the caller's transaction: sent if and only if the
/// change that caused it commits.
pub async fn send(conn: &mut sqlx::PgConnection, message: Message<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO dev_deliveries (id, channel, user_id, recipient, subject, body) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(message.channel)
    .bind(message.user_id)
    .bind(message.recipient)
    .bind(message.subject)
    .bind(message.body)
    .execute(conn)
    .await?;
    Ok(())
}
