//! Signed webhooks, Stripe's scheme: the sender puts
//! `Rentify-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
//! on each request; the receiver checks the HMAC in constant time and refuses
//! timestamps outside a tolerance, which bounds replays. Used by every
//! webhook Rentify receives (KYC provider, payment gateway) and by the
//! sandbox providers that send them.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signature's timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a webhook signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Rentify-Signature header is missing")]
    Missing,
    #[error("the Rentify-Signature header is malformed; expected t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches the payload")]
    Mismatch,
}

/// The `v1` signature of `body` sent at `timestamp` under `secret`.
pub fn compute_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A complete `Rentify-Signature` header value (what the provider sends).
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(compute_signature(secret, timestamp, body))
    )
}

/// Checks a `Rentify-Signature` header against the raw `body`: one `t=`,
/// at least one `v1=` (any may match), and `t` within `tolerance_secs` of
/// `now` either way. Unknown schemes (`v0=`, …) are ignored.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key.trim() {
            "t" => {
                let t: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| SignatureError::Malformed)?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            // A candidate that is not hex cannot match; keep looking.
            "v1" => candidates.extend(hex::decode(value.trim()).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() && !header.contains("v1=") {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = compute_signature(secret, timestamp, body);
    let mut matched = false;
    for candidate in &candidates {
        matched |= bool::from(expected.as_slice().ct_eq(candidate.as_slice()));
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"identity_verification.verified","data":{"verification_id":"00000000-0000-0000-0000-000000000000"}}"#;
    const NOW: i64 = 1_800_000_000;

    fn check(header: &str, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
        verify_signature(Some(header), body, secret, NOW, TOLERANCE_SECS)
    }

    #[test]
    fn a_valid_signature_passes() {
        let header = signature_header(SECRET, NOW - 10, BODY);
        assert_eq!(check(&header, BODY, SECRET), Ok(()));
    }

    #[test]
    fn any_of_several_v1_entries_may_match() {
        let good = hex::encode(compute_signature(SECRET, NOW, BODY));
        let other = hex::encode(compute_signature(b"old", NOW, BODY));
        let header = format!("t={NOW},v1={other},v0=abc,v1={good}");
        assert_eq!(check(&header, BODY, SECRET), Ok(()));
        let header = format!("t={NOW},v1={other}");
        assert_eq!(check(&header, BODY, SECRET), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_tampered_body_fails() {
        let header = signature_header(SECRET, NOW, BODY);
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("verified", "rejected");
        assert_eq!(
            check(&header, tampered.as_bytes(), SECRET),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_fails() {
        let header = signature_header(b"whsec_other", NOW, BODY);
        assert_eq!(check(&header, BODY, SECRET), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_changed_timestamp_fails() {
        let sig = hex::encode(compute_signature(SECRET, NOW - 1, BODY));
        let header = format!("t={NOW},v1={sig}");
        assert_eq!(check(&header, BODY, SECRET), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let edge = signature_header(SECRET, NOW - TOLERANCE_SECS, BODY);
        assert_eq!(check(&edge, BODY, SECRET), Ok(()));
        let stale = signature_header(SECRET, NOW - TOLERANCE_SECS - 1, BODY);
        assert_eq!(check(&stale, BODY, SECRET), Err(SignatureError::Stale));
        let future = signature_header(SECRET, NOW + TOLERANCE_SECS + 1, BODY);
        assert_eq!(check(&future, BODY, SECRET), Err(SignatureError::Stale));
    }

    #[test]
    fn malformed_headers_fail() {
        let sig = hex::encode(compute_signature(SECRET, NOW, BODY));
        assert_eq!(
            verify_signature(None, BODY, SECRET, NOW, TOLERANCE_SECS),
            Err(SignatureError::Missing)
        );
        for header in [
            String::new(),
            "garbage".to_owned(),
            format!("v1={sig}"),
            format!("t=abc,v1={sig}"),
            format!("t={NOW}"),
            format!("t={NOW},t={NOW},v1={sig}"),
            format!("t={NOW};v1={sig}"),
        ] {
            assert_eq!(
                check(&header, BODY, SECRET),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        // Not hex: cannot match.
        assert_eq!(
            check(&format!("t={NOW},v1=zz"), BODY, SECRET),
            Err(SignatureError::Mismatch)
        );
    }
}
