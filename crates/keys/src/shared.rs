//! A secret two processes share and present to each other, such as the one that
//! authenticates the edge gateway to the issuer: held only as an HMAC tag under a key drawn
//! at start, and compared in constant time.

use std::fmt;

use ring::hmac;

use crate::KeyError;
use crate::random::system_random;

/// A configured shared secret, checked against what a peer presents. The secret itself is
/// not kept: only its HMAC-SHA-256 tag under a random per-process key, so that checking a
/// presented value is one HMAC and a constant-time comparison of the tags (ring's
/// `hmac::verify`), whatever its length, and no comparison reveals how many leading bytes
/// matched.
#[derive(Clone)]
pub struct SharedSecret {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl SharedSecret {
    /// Keeps `secret`'s tag under a fresh random key. Whether `secret` is long enough is
    /// the configuration's business.
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &system_random())
            .map_err(|_| KeyError::Random)?;
        let tag = hmac::sign(&key, secret);
        Ok(Self { key, tag })
    }

    /// Whether `presented` is the secret, compared in constant time.
    #[must_use]
    pub fn matches(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_matches() -> Result<(), KeyError> {
        let text = b"0123456789abcdef0123456789abcdef";
        let secret = SharedSecret::new(text)?;
        assert!(secret.matches(text));
        assert!(!secret.matches(b"0123456789abcdef0123456789abcdeF"));
        assert!(!secret.matches(&text[..31]));
        assert!(!secret.matches(b"0123456789abcdef0123456789abcdef0"));
        assert!(!secret.matches(b""));
        // Two processes with the same secret hold different tags, and still both match.
        let other = SharedSecret::new(text)?;
        assert_ne!(secret.tag.as_ref(), other.tag.as_ref());
        assert!(other.matches(text));
        assert_eq!(format!("{secret:?}"), "SharedSecret(..)");
        Ok(())
    }
}
