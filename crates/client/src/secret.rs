//! Credentials that must never be printed: the client secret and the access tokens it buys.
//! Their `Debug` and `Display` say `<redacted>`; reading them takes an explicit `expose`.

use std::fmt;
use std::sync::Arc;

/// A client secret. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Arc::from(secret.into()))
    }

    /// The secret's text, to send to the token endpoint.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An access token: a bearer credential, printed as `<redacted>`. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::{AccessToken, Secret};

    #[test]
    fn secrets_and_tokens_print_redacted() {
        let secret = Secret::from("tgsec_hunter2");
        let token = AccessToken::new("eyJhbGciOi.payload.signature");
        #[rustfmt::skip]
        let cases = [
            (format!("{secret:?}"),  "Secret(<redacted>)"),
            (format!("{secret}"),    "<redacted>"),
            (format!("{secret:#?}"), "Secret(<redacted>)"),
            (format!("{token:?}"),   "AccessToken(<redacted>)"),
            (format!("{token}"),     "<redacted>"),
        ];
        for (printed, expected) in cases {
            assert_eq!(printed, expected);
        }
        assert_eq!(secret.expose(), "tgsec_hunter2");
        assert_eq!(token.expose(), "eyJhbGciOi.payload.signature");
    }
}
