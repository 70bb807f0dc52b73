//! Opaque ids of stored things: [`TenantId`], [`ApiId`], [`AppId`], [`SecretId`] and
//! [`KeyId`]. Each is the text the store keeps in its `id` column (generated once, e.g.
//! `ten_…`, `api_…`, `app_…`, `sec_…`, `key_…`) and that tokens carry (`cid`, `sid`, `kid`).
//!
//! Unlike the names in `names.rs`, an id is not parsed: it is compared, stored and echoed,
//! never interpreted, so any text is accepted as it is. The types exist so that an id of one
//! kind cannot be passed where another is meant, and so that a tenant is named one way
//! (`&TenantId`) in every call that acts within it.

use std::fmt;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id whose text is `value`, as stored or as a token carries it. Not checked:
            /// ids are opaque.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        // As the bare text, so that logs and messages read as they did when ids were strings.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

opaque_id! {
    /// A tenant's id (`ten_…`): the key of its rows, the `cid` claim of its tokens, the id of
    /// its audit chain. Never changes and is never reused; its name ([`crate::TenantName`])
    /// is what people and URLs use.
    TenantId
}

opaque_id! {
    /// An API's id (`api_…`), unique within its tenant; its identifier
    /// ([`crate::ApiIdentifier`]) is the audience people use.
    ApiId
}

opaque_id! {
    /// An app's id (`app_…`), the key its secrets and grants reference; its client id
    /// ([`crate::ClientId`]) is what OAuth clients send.
    AppId
}

opaque_id! {
    /// A client secret's id (`sec_…`): the `sid` claim of tokens obtained with it.
    SecretId
}

opaque_id! {
    /// A signing key's id (`key_…`): the JWS `kid`.
    KeyId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_text() {
        let id = TenantId::new("ten_1");
        assert_eq!(id.as_str(), "ten_1");
        assert_eq!(id.to_string(), "ten_1");
        assert_eq!(format!("{id:?}"), "\"ten_1\"");
        assert_eq!(ApiId::from("api_1"), ApiId::new(String::from("api_1")));
        assert_eq!(id, "ten_1");
        assert_eq!(id, *"ten_1");
        assert_ne!(id, TenantId::new("ten_2"));
        assert_eq!(KeyId::new(String::from("key_1")).into_string(), "key_1");
        let mut by_id = std::collections::HashMap::new();
        by_id.insert(SecretId::new("sec_1"), 1);
        assert_eq!(by_id.get("sec_1"), Some(&1));
    }
}
