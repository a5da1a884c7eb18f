//! Signed upload URLs of the local store: the URL itself is the credential.
//!
//! `signature = hex(HMAC-SHA256(MEDIA_SIGNING_KEY, "<media id>|<expires>|<content type>|<size>"))`,
//! so a URL is good for one upload, of one declared type and size, until
//! `expires` (unix seconds). Verification is constant time.

use hmac::{Hmac, Mac};
use rentify_platform::config::Config;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Seed of the development key, used only when `MEDIA_SIGNING_KEY` is unset
/// (the configuration refuses that in production).
const DEV_SEED: &[u8] = b"rentify development media signing key";

/// The HMAC key of upload URLs.
#[derive(Clone)]
pub struct UploadSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UploadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSigner(..)")
    }
}

/// What an upload URL commits to.
#[derive(Clone, Copy, Debug)]
pub struct UploadGrant<'a> {
    pub media_id: Uuid,
    /// Unix seconds.
    pub expires: i64,
    pub content_type: &'a str,
    pub size_bytes: i64,
}

impl UploadSigner {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    /// From `MEDIA_SIGNING_KEY`, or the fixed development key when unset.
    pub fn from_config(config: &Config) -> Self {
        match &config.media_signing_key {
            Some(key) => Self::new(key.expose_secret().as_bytes()),
            None => {
                tracing::warn!(
                    "MEDIA_SIGNING_KEY is not set: using the development key (not for production)"
                );
                Self::new(Sha256::digest(DEV_SEED).to_vec())
            }
        }
    }

    fn mac(&self, grant: &UploadGrant<'_>) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(
            format!(
                "{}|{}|{}|{}",
                grant.media_id, grant.expires, grant.content_type, grant.size_bytes
            )
            .as_bytes(),
        );
        mac.finalize().into_bytes().to_vec()
    }

    /// The hex signature of `grant`.
    pub fn sign(&self, grant: &UploadGrant<'_>) -> String {
        hex::encode(self.mac(grant))
    }

    /// Whether `signature` (hex) signs `grant`; constant time.
    pub fn verify(&self, grant: &UploadGrant<'_>, signature: &str) -> bool {
        let Ok(candidate) = hex::decode(signature) else {
            return false;
        };
        bool::from(self.mac(grant).as_slice().ct_eq(candidate.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(size_bytes: i64) -> UploadGrant<'static> {
        UploadGrant {
            media_id: Uuid::nil(),
            expires: 1_800_000_000,
            content_type: "image/png",
            size_bytes,
        }
    }

    #[test]
    fn a_signature_binds_every_field() {
        let signer = UploadSigner::new(b"k".to_vec());
        let signature = signer.sign(&grant(10));
        assert!(signer.verify(&grant(10), &signature));
        assert!(!signer.verify(&grant(11), &signature));
        let other_type = UploadGrant {
            content_type: "image/jpeg",
            ..grant(10)
        };
        assert!(!signer.verify(&other_type, &signature));
        let later = UploadGrant {
            expires: 1_800_000_001,
            ..grant(10)
        };
        assert!(!signer.verify(&later, &signature));
        assert!(!UploadSigner::new(b"other".to_vec()).verify(&grant(10), &signature));
        assert!(!signer.verify(&grant(10), "not hex"));
        assert!(!signer.verify(&grant(10), ""));
    }
}
