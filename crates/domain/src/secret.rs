//! The client secret, a value that must never be printed.

/// A client secret in plain text, as generated for or presented by a client.
///
/// Deliberately implements neither `Debug`, `Display` nor `Serialize`: the only way to read
/// it is [`ClientSecret::expose`], which makes every use visible in review.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret. No validation: an unknown format simply fails to authenticate.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret's text, for hashing or for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}
