//! Cryptographic building blocks: field encryption for personal data at rest
//! (AES-256-GCM under versioned keys), the keyed blind index that lets us
//! look encrypted values up, random secrets, and hashes of secrets we store.

use std::collections::HashMap;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rentify_platform::config::Config;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

/// Encrypts and decrypts personal fields. The first configured key encrypts;
/// every configured key decrypts, so keys rotate without a rewrite. Each
/// ciphertext is bound to its column (`context`, the AEAD associated data),
/// so a value copied into another column does not decrypt.
#[derive(Clone)]
pub struct FieldCipher {
    current: u8,
    keys: HashMap<u8, Aes256Gcm>,
}

/// Bytes of nonce prepended to each ciphertext (after the version byte).
const NONCE_LEN: usize = 12;

/// Development-only key material, refused by `APP_ENV=production`.
const DEV_PII_SEED: &[u8] = b"rentify development PII key - never use in production";
const DEV_BLIND_SEED: &[u8] = b"rentify development blind index key - never use in production";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{0}")]
    Config(String),
    #[error("ciphertext cannot be decrypted with the configured keys")]
    Decrypt,
}

impl FieldCipher {
    /// From `PII_ENCRYPTION_KEYS` (`<version>:<base64 32 bytes>,…`), or the
    /// development key when unset.
    pub fn from_config(config: &Config) -> Result<Self, CryptoError> {
        match &config.pii_encryption_keys {
            Some(spec) => Self::parse(spec.expose_secret()),
            None => {
                tracing::warn!(
                    "PII_ENCRYPTION_KEYS is not set: using the development key (not for production)"
                );
                Ok(Self::single(1, &Sha256::digest(DEV_PII_SEED).into()))
            }
        }
    }

    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let bad = |why: &str| CryptoError::Config(format!("PII_ENCRYPTION_KEYS: {why}"));
        let mut current = None;
        let mut keys = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (version, key) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected <version>:<base64 key>"))?;
            let version: u8 = version
                .parse()
                .map_err(|_| bad("the version must be a number from 1 to 255"))?;
            let key = STANDARD
                .decode(key)
                .map_err(|_| bad("the key is not base64"))?;
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| bad("each key must be 32 bytes (AES-256)"))?;
            if keys.insert(version, cipher(&key)).is_some() {
                return Err(bad("a version is listed twice"));
            }
            current.get_or_insert(version);
        }
        let current = current.ok_or_else(|| bad("no key given"))?;
        Ok(Self { current, keys })
    }

    fn single(version: u8, key: &[u8; 32]) -> Self {
        Self {
            current: version,
            keys: HashMap::from([(version, cipher(key))]),
        }
    }

    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let key = &self.keys[&self.current];
        let sealed = key
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(self.current);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, context: &str, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if data.len() < 1 + NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let key = self.keys.get(&data[0]).ok_or(CryptoError::Decrypt)?;
        key.decrypt(
            Nonce::from_slice(&data[1..1 + NONCE_LEN]),
            Payload {
                msg: &data[1 + NONCE_LEN..],
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| CryptoError::Decrypt)
    }

    pub fn encrypt_str(&self, context: &str, plaintext: &str) -> Vec<u8> {
        self.encrypt(context, plaintext.as_bytes())
    }

    pub fn decrypt_string(&self, context: &str, data: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(context, data)?).map_err(|_| CryptoError::Decrypt)
    }
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// HMAC-SHA256 of a normalised value under `BLIND_INDEX_KEY`: equal inputs
/// give equal indexes, but the index reveals nothing without the key.
#[derive(Clone)]
pub struct BlindIndex {
    key: [u8; 32],
}

impl BlindIndex {
    pub fn from_config(config: &Config) -> Result<Self, CryptoError> {
        let key = match &config.blind_index_key {
            Some(key) => STANDARD
                .decode(key.expose_secret().trim())
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| {
                    CryptoError::Config("BLIND_INDEX_KEY must be base64 of 32 bytes".into())
                })?,
            None => Sha256::digest(DEV_BLIND_SEED).into(),
        };
        Ok(Self { key })
    }

    pub fn compute(&self, context: &str, value: &str) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// `bytes` random bytes, base64url without padding (tokens, states).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a high-entropy secret (refresh tokens, API keys, codes bound
/// to a user). Low-entropy secrets (passwords) use Argon2id instead.
pub fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trips_and_binds_the_context() {
        let cipher = FieldCipher::parse(&format!("1:{}", key(7))).unwrap();
        let sealed = cipher.encrypt_str("users.phone", "+33612345678");
        assert!(!sealed.windows(4).any(|w| w == b"3361"));
        assert_eq!(
            cipher.decrypt_string("users.phone", &sealed).unwrap(),
            "+33612345678"
        );
        assert!(cipher.decrypt("kyc.reference", &sealed).is_err());
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let old = FieldCipher::parse(&format!("1:{}", key(1))).unwrap();
        let sealed = old.encrypt_str("c", "secret");
        let rotated = FieldCipher::parse(&format!("2:{},1:{}", key(2), key(1))).unwrap();
        assert_eq!(rotated.decrypt_string("c", &sealed).unwrap(), "secret");
        assert_eq!(rotated.encrypt_str("c", "x")[0], 2);
        let without_old = FieldCipher::parse(&format!("2:{}", key(2))).unwrap();
        assert!(without_old.decrypt("c", &sealed).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let cipher = FieldCipher::parse(&format!("1:{}", key(3))).unwrap();
        let mut sealed = cipher.encrypt_str("c", "value");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(cipher.decrypt("c", &sealed).is_err());
    }

    #[test]
    fn bad_key_specs_are_named() {
        for spec in [
            "",
            "1",
            "x:abc",
            &format!("1:{}", STANDARD.encode([0u8; 16])),
        ] {
            let err = FieldCipher::parse(spec).err().unwrap().to_string();
            assert!(err.contains("PII_ENCRYPTION_KEYS"), "{err}");
        }
    }

    #[test]
    fn blind_index_is_deterministic_and_keyed() {
        let a = BlindIndex { key: [1; 32] };
        let b = BlindIndex { key: [2; 32] };
        assert_eq!(a.compute("phone", "+1555"), a.compute("phone", "+1555"));
        assert_ne!(a.compute("phone", "+1555"), b.compute("phone", "+1555"));
        assert_ne!(a.compute("phone", "+1555"), a.compute("phone", "+1556"));
    }
}
