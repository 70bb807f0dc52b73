//! Client-secret hashing: HMAC-SHA-256 keyed with a pepper derived from the master key.
//!
//! Secrets are 256 random bits, so a slow password hash would add latency without adding
//! security; the pepper means a stolen database alone cannot even confirm a guess. Stored
//! form: `v1$` + base64url (unpadded) of the 32-byte tag. The version prefix leaves room
//! for another scheme later.

use std::fmt;
use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use tollgate_domain::ClientSecret;

/// The prefix of version-1 hashes.
const V1_PREFIX: &str = "v1$";

/// Length of an HMAC-SHA-256 tag.
const TAG_LEN: usize = 32;

/// Length of a base64url-encoded tag without padding.
const ENCODED_TAG_LEN: usize = 43;

/// Verified against when the client is unknown. Its value is irrelevant: it only has to
/// make [`SecretHasher::verify_dummy`] do the same work as a real comparison.
const DUMMY_TAG: [u8; TAG_LEN] = [0x5a; TAG_LEN];

/// Hashes and verifies client secrets. Cheap to clone (the key is shared, precomputed HMAC
/// state).
#[derive(Clone)]
pub struct SecretHasher {
    pepper: hmac::Key,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    /// A hasher keyed with `pepper`; made by [`crate::MasterKey::secret_hasher`].
    pub(crate) fn new(pepper: hmac::Key) -> Self {
        Self { pepper }
    }

    /// The stored form of `secret`: `v1$` + base64url(HMAC-SHA-256(pepper, secret)).
    #[must_use]
    pub fn hash(&self, secret: &ClientSecret) -> String {
        let tag = hmac::sign(&self.pepper, secret.expose().as_bytes());
        let mut stored = String::with_capacity(V1_PREFIX.len() + ENCODED_TAG_LEN);
        stored.push_str(V1_PREFIX);
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut stored);
        stored
    }

    /// Whether `secret` matches `stored`, compared in constant time. An unknown version or a
    /// malformed stored value is `false` (after the same HMAC work, so even a corrupt row
    /// does not stand out by timing).
    #[must_use]
    pub fn verify(&self, secret: &ClientSecret, stored: &str) -> bool {
        match decode_v1(stored) {
            Some(tag) => hmac::verify(&self.pepper, secret.expose().as_bytes(), &tag).is_ok(),
            None => {
                self.verify_dummy(secret);
                false
            }
        }
    }

    /// Does the work of [`SecretHasher::verify`] against a fixed tag and discards the
    /// result, so that authenticating an unknown client takes as long as a known one.
    pub fn verify_dummy(&self, secret: &ClientSecret) {
        // black_box keeps the optimiser from reasoning the unused result (and the work
        // behind it) away.
        black_box(hmac::verify(&self.pepper, secret.expose().as_bytes(), &DUMMY_TAG).is_ok());
    }
}

/// The tag of a well-formed version-1 stored hash.
fn decode_v1(stored: &str) -> Option<[u8; TAG_LEN]> {
    let encoded = stored.strip_prefix(V1_PREFIX)?;
    if encoded.len() != ENCODED_TAG_LEN {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    // The engine rejects non-canonical trailing bits, so each tag has exactly one
    // accepted encoding.
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut tag) {
        Ok(TAG_LEN) => Some(tag),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyError, MasterKey};

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// HMAC-SHA-256(HKDF-SHA-256(salt "", ikm 00…1f, info "tollgate client-secret pepper
    /// v1"), "tgsec_example"), computed independently with Python's hashlib. Pins the
    /// derivation: changing it would lock every client out.
    const KNOWN_HASH: &str = "v1$JGtHRiEbkyDgRNWl6KX8uLJkgTBhx2Bp6Xc_HLGGOHk";

    fn hasher() -> Result<SecretHasher, KeyError> {
        Ok(MasterKey::parse(KEY_HEX)?.secret_hasher())
    }

    fn secret(text: &str) -> ClientSecret {
        ClientSecret::new(text.to_owned())
    }

    #[test]
    fn known_answer() -> Result<(), KeyError> {
        let hasher = hasher()?;
        assert_eq!(hasher.hash(&secret("tgsec_example")), KNOWN_HASH);
        assert!(hasher.verify(&secret("tgsec_example"), KNOWN_HASH));
        Ok(())
    }

    #[test]
    fn verify_cases() -> Result<(), KeyError> {
        let hasher = hasher()?;
        let right = secret("tgsec_right");
        let stored = hasher.hash(&right);
        assert_eq!(stored.len(), 46);
        let mut tampered = stored.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap_or_default();
        let body = &stored[3..];
        let cases = [
            ("right secret", right.clone(), stored.clone(), true),
            ("wrong secret", secret("tgsec_wrong"), stored.clone(), false),
            ("empty secret", secret(""), stored.clone(), false),
            ("tampered hash", right.clone(), tampered, false),
            (
                "unknown version",
                right.clone(),
                format!("v2${body}"),
                false,
            ),
            ("no version", right.clone(), body.to_owned(), false),
            ("truncated", right.clone(), stored[..45].to_owned(), false),
            ("extended", right.clone(), format!("{stored}A"), false),
            ("padded", right.clone(), format!("{stored}="), false),
            (
                "not base64",
                right.clone(),
                format!("v1${}", "!".repeat(43)),
                false,
            ),
            ("empty", right.clone(), String::new(), false),
        ];
        for (case, secret, stored, expected) in cases {
            assert_eq!(hasher.verify(&secret, &stored), expected, "{case}");
        }
        Ok(())
    }

    #[test]
    fn pepper_depends_on_the_master_key() -> Result<(), KeyError> {
        let (other, _) = MasterKey::generate()?;
        let stored = hasher()?.hash(&secret("tgsec_x"));
        assert!(!other.secret_hasher().verify(&secret("tgsec_x"), &stored));
        assert_ne!(other.secret_hasher().hash(&secret("tgsec_x")), stored);
        Ok(())
    }

    #[test]
    fn dummy_and_debug() -> Result<(), KeyError> {
        let hasher = hasher()?;
        hasher.verify_dummy(&secret("tgsec_anything"));
        assert_eq!(format!("{hasher:?}"), "SecretHasher(..)");
        Ok(())
    }
}
