//! Demo data (`rentify seed --demo`): the demo renter gets a card and the
//! demo owner a payout account, through the gateway like anyone else.
//! Idempotent.

use uuid::Uuid;

use crate::{Payments, gateway::PaymentGateway};

/// Gives `user_id` a default card from the sandbox token `token` unless
/// they have a card already; `true` if one was added.
pub async fn ensure_card(p: &Payments, user_id: Uuid, token: &str) -> anyhow::Result<bool> {
    let has: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_methods WHERE user_id = $1 AND deleted_at IS NULL)",
    )
    .bind(user_id)
    .fetch_one(p.db())
    .await?;
    if has {
        return Ok(false);
    }
    let card = p.gateway().create_method(token).await?;
    sqlx::query(
        "INSERT INTO payment_methods (id, user_id, provider_method_id, brand, last4, exp_month,
                                      exp_year, is_default)
         VALUES ($1, $2, $3, $4, $5, $6, $7, true)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(&card.provider_method_id)
    .bind(&card.brand)
    .bind(&card.last4)
    .bind(card.exp_month)
    .bind(card.exp_year)
    .execute(p.db())
    .await?;
    Ok(true)
}

/// Gives `user_id` a payout account from the sandbox token `token` unless
/// they have one; `true` if one was added.
pub async fn ensure_payout_account(
    p: &Payments,
    user_id: Uuid,
    token: &str,
) -> anyhow::Result<bool> {
    let has: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payout_accounts WHERE user_id = $1)")
            .bind(user_id)
            .fetch_one(p.db())
            .await?;
    if has {
        return Ok(false);
    }
    let destination = p.gateway().create_payout_destination(token).await?;
    sqlx::query(
        "INSERT INTO payout_accounts (user_id, provider_account_id, bank_name, last4)
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(&destination.provider_account_id)
    .bind(&destination.bank_name)
    .bind(&destination.last4)
    .execute(p.db())
    .await?;
    Ok(true)
}
