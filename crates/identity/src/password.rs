//! Passwords: the strength policy and Argon2id hashing.
//!
//! Hashing uses the argon2 crate's defaults, which are OWASP's recommended
//! Argon2id parameters (19 MiB, 2 iterations, 1 lane). It runs on the
//! blocking pool so a burst of logins does not stall the async workers.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;
/// zxcvbn score (0–4) a password needs: 3 is "safely unguessable".
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// Why a password was refused, for the `weak_password` error.
pub fn weakness(password: &str, user_inputs: &[&str]) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Some(format!("use at least {MIN_LENGTH} characters"));
    }
    if chars > MAX_LENGTH {
        return Some(format!("use at most {MAX_LENGTH} characters"));
    }
    let estimate = zxcvbn::zxcvbn(password, user_inputs);
    if estimate.score() >= MIN_SCORE {
        return None;
    }
    let feedback = estimate.feedback();
    let warning = feedback
        .and_then(|f| f.warning())
        .map(|w| w.to_string())
        .unwrap_or_else(|| "this password is easy to guess".into());
    let suggestion = feedback
        .and_then(|f| f.suggestions().first())
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    Some(format!("{warning}.{suggestion}").replace("..", "."))
}

/// An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

/// Checks `password` against `phc`. Always does the full work, also when
/// `phc` is the dummy hash used for unknown emails, so timing does not
/// reveal whether an account exists.
pub async fn verify(password: String, phc: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_guessable_passwords_are_refused_with_a_reason() {
        assert!(weakness("short", &[]).unwrap().contains("10 characters"));
        assert!(weakness("password123", &[]).is_some());
        assert!(weakness("aaaaaaaaaaaa", &[]).is_some());
        // The user's own name or email do not make a password.
        assert!(weakness("alice.martin@example.com", &["alice.martin@example.com"]).is_some());
        assert!(weakness("correct horse battery staple 42!", &[]).is_none());
        assert!(weakness("Tq8#vLm2$xWz9!", &[]).is_none());
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("Tq8#vLm2$xWz9!".into()).await.unwrap();
        let b = hash("Tq8#vLm2$xWz9!".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(verify("Tq8#vLm2$xWz9!".into(), a.clone()).await.unwrap());
        assert!(!verify("Tq8#vLm2$xWz9?".into(), a).await.unwrap());
    }
}
