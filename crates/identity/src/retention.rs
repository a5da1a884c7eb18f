//! Expired sign-in state, deleted by the daily retention job: nothing here
//! is needed once it can no longer be used (a refresh-token family is kept
//! whole until its last token expired, for reuse detection).

use sqlx::PgConnection;

/// A day of grace after expiry, so a just-expired token still answers
/// "expired" rather than "unknown".
const GRACE: &str = "interval '1 day'";

/// Deletes expired refresh-token families, verification codes, MFA
/// challenges and OIDC logins. Returns the rows deleted.
pub async fn purge_expired(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let statements = [
        format!(
            "DELETE FROM refresh_tokens WHERE family_id IN (
                 SELECT family_id FROM refresh_tokens GROUP BY family_id
                 HAVING max(expires_at) < now() - {GRACE})"
        ),
        format!("DELETE FROM email_verifications WHERE expires_at < now() - {GRACE}"),
        format!("DELETE FROM phone_verifications WHERE expires_at < now() - {GRACE}"),
        format!("DELETE FROM mfa_challenges WHERE expires_at < now() - {GRACE}"),
        format!("DELETE FROM oidc_logins WHERE expires_at < now() - {GRACE}"),
    ];
    let mut deleted = 0;
    for statement in statements {
        deleted += sqlx::query(&statement)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(deleted)
}
