//! The one error type of this crate. Messages are lowercase and never contain key material,
//! secrets or the text they were parsed from: they are safe to log and to show an operator.

use tollgate_domain::Algorithm;

/// Why a key operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The master key text is malformed; the message says how, never what it contained.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(&'static str),
    /// The master key decoded, but to the wrong number of bytes.
    #[error("invalid master key: must be 32 bytes, but {encoding} decodes to {len} bytes")]
    MasterKeyLength {
        /// The encoding the text was read as (`hex` or `base64`).
        encoding: &'static str,
        /// How many bytes it decoded to.
        len: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Sealing failed (only possible for absurdly large inputs).
    #[error("encryption failed")]
    Encrypt,
    /// A sealed value could not be opened: wrong key, wrong associated data, tampered,
    /// truncated, or an unknown format version. Deliberately not more specific.
    #[error("decryption failed")]
    Decrypt,
    /// Generating a key pair failed.
    #[error("{alg} key generation failed")]
    KeyGeneration {
        /// The algorithm of the key being generated.
        alg: Algorithm,
    },
    /// A stored private key was rejected when loaded.
    #[error("invalid {alg} private key: {reason}")]
    InvalidPrivateKey {
        /// The algorithm the key was loaded as.
        alg: Algorithm,
        /// What the parser objected to, e.g. `wrong algorithm`.
        reason: String,
    },
    /// Signing a token failed.
    #[error("signing failed")]
    Sign,
    /// The token's header or claims could not be serialised.
    #[error("token serialization failed")]
    Serialize,
}

impl KeyError {
    /// An [`KeyError::InvalidPrivateKey`] from ring's rejection, whose descriptions are
    /// CamelCase identifiers (`WrongAlgorithm`); they become lowercase words
    /// (`wrong algorithm`) to match every other message.
    pub(crate) fn rejected(alg: Algorithm, rejected: &ring::error::KeyRejected) -> Self {
        let mut reason = String::new();
        for ch in rejected.to_string().chars() {
            if ch.is_ascii_uppercase() && !reason.is_empty() {
                reason.push(' ');
            }
            reason.push(ch.to_ascii_lowercase());
        }
        KeyError::InvalidPrivateKey { alg, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_reasons_become_lowercase_words() {
        let rejected = ring::signature::Ed25519KeyPair::from_pkcs8(b"not a key").err();
        let reasons = rejected.map(|r| KeyError::rejected(Algorithm::EdDsa, &r).to_string());
        assert_eq!(
            reasons.as_deref(),
            Some("invalid EdDSA private key: invalid encoding")
        );
    }
}
