//! How a delivery leaves: one [`Transport`] per outside channel.
//!
//! - email: SMTP through `lettre` when `SMTP_URL` is set (a multipart
//!   plain-text + HTML message); otherwise the development transport;
//! - SMS and push: the development transport until provider adapters exist.
//!
//! The development transport records each message in
//! `notification_dev_messages` (once per delivery) and reports it
//! `delivered`. SMTP reports `sent`: the server accepted the message, which
//! is all SMTP can tell.

use std::{sync::Arc, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, header::ContentType},
};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::{Channel, DeliveryStatus};

/// A message ready to leave.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub delivery_id: Uuid,
    pub channel: Channel,
    /// The real address: an email, a phone number, `user:<id>` for push.
    pub to: String,
    /// How the address may be recorded (a phone number is masked).
    pub recipient_label: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// What the provider said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// `sent` (accepted) or `delivered` (confirmed).
    pub status: DeliveryStatus,
    pub provider_message_id: Option<String>,
}

/// Why a message did not leave.
#[derive(Clone, Debug)]
pub struct SendError {
    pub message: String,
    /// Trying again cannot help (an address the server refuses for good).
    pub permanent: bool,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// A channel's way out. Implementations must tolerate the same delivery
/// twice (a job may run again after a crash): the development transport
/// records once, SMTP sets a stable `Message-ID` receivers can deduplicate on.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError>;
}

/// The transports of each channel.
#[derive(Clone)]
pub struct Transports {
    pub email: Arc<dyn Transport>,
    pub sms: Arc<dyn Transport>,
    pub push: Arc<dyn Transport>,
}

impl Transports {
    /// From the configuration: SMTP for email when `SMTP_URL` is set.
    pub fn from_config(
        config: &rentify_platform::config::Config,
        db: PgPool,
    ) -> anyhow::Result<Self> {
        let email: Arc<dyn Transport> = match &config.smtp_url {
            Some(url) => Arc::new(SmtpEmail::new(url.expose_secret(), &config.email_from)?),
            None => Arc::new(DevTransport { db: db.clone() }),
        };
        let dev = Arc::new(DevTransport { db });
        Ok(Self {
            email,
            sms: dev.clone(),
            push: dev,
        })
    }

    pub fn of(&self, channel: Channel) -> &Arc<dyn Transport> {
        match channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
            Channel::Push => &self.push,
        }
    }
}

/// Records messages instead of sending them.
pub struct DevTransport {
    db: PgPool,
}

#[async_trait::async_trait]
impl Transport for DevTransport {
    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO notification_dev_messages
                 (id, delivery_id, channel, recipient, subject, body_text, body_html)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (delivery_id) DO UPDATE SET delivery_id = EXCLUDED.delivery_id
             RETURNING id",
        )
        .bind(rentify_platform::ids::new_id())
        .bind(message.delivery_id)
        .bind(message.channel.as_str())
        .bind(&message.recipient_label)
        .bind(&message.subject)
        .bind(&message.text)
        .bind(&message.html)
        .fetch_one(&self.db)
        .await
        .map_err(|e| SendError::transient(format!("recording the message: {e}")))?;
        Ok(Receipt {
            status: DeliveryStatus::Delivered,
            provider_message_id: Some(format!("dev_{}", id.simple())),
        })
    }
}

/// How long one SMTP exchange may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Email over SMTP (`smtp://host:port` plain, `smtps://user:pass@host` TLS).
pub struct SmtpEmail {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of `Message-ID`s: the sender's.
    domain: String,
}

impl SmtpEmail {
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("SMTP_URL is not a usable SMTP URL: {e}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("EMAIL_FROM is not an address ({from}): {e}"))?;
        let domain = from.email.domain().to_owned();
        Ok(Self {
            mailer,
            from,
            domain,
        })
    }
}

#[async_trait::async_trait]
impl Transport for SmtpEmail {
    async fn send(&self, message: &Outbound) -> Result<Receipt, SendError> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|e| SendError::permanent(format!("not an email address: {e}")))?;
        let message_id = format!("<{}@{}>", message.delivery_id, self.domain);
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&message.subject)
            .message_id(Some(message_id.clone()));
        let email = match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(message.text.clone()),
        }
        .map_err(|e| SendError::permanent(format!("building the message: {e}")))?;
        match self.mailer.send(email).await {
            Ok(_) => Ok(Receipt {
                status: DeliveryStatus::Sent,
                provider_message_id: Some(message_id),
            }),
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::transient(format!("SMTP: {e}"))),
        }
    }
}
