//! Randomness and the random identifiers built from it: client ids, client secrets,
//! database ids, key ids and token ids. Everything reads ring's `SystemRandom` (the
//! operating system's CSPRNG); nothing here is seeded or deterministic.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use tollgate_domain::{ClientId, ClientSecret};

use crate::KeyError;

/// The prefix of every client secret Tollgate generates. It makes leaked secrets easy to
/// recognise for secret scanners and people.
pub const CLIENT_SECRET_PREFIX: &str = "tgsec_";

/// Length of a generated client id, in characters.
pub const CLIENT_ID_LEN: usize = 32;

/// The alphabet of generated client ids: 62 symbols, all legal in a [`ClientId`] and none
/// needing escaping anywhere.
const CLIENT_ID_ALPHABET: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The process's CSPRNG. `SystemRandom::new` is not `const`, so it cannot sit in a
/// `static`; it is a zero-sized handle whose constructor does nothing, so making one per
/// call costs nothing and needs no lazily initialised global.
pub(crate) fn system_random() -> SystemRandom {
    SystemRandom::new()
}

/// Fills `buf` from the CSPRNG.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), KeyError> {
    system_random().fill(buf).map_err(|_| KeyError::Random)
}

/// `N` random bytes.
fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    Ok(bytes)
}

/// A new client secret: `tgsec_` followed by the base64url (no padding) of 32 random bytes,
/// 256 bits of entropy, 49 characters in all.
pub fn generate_client_secret() -> Result<ClientSecret, KeyError> {
    let bytes = random_bytes::<32>()?;
    let mut secret = String::with_capacity(CLIENT_SECRET_PREFIX.len() + 43);
    secret.push_str(CLIENT_SECRET_PREFIX);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut secret);
    Ok(ClientSecret::new(secret))
}

/// A new client id: 32 characters drawn uniformly from `[A-Za-z0-9]`, about 190.5 bits.
pub fn generate_client_id() -> Result<ClientId, KeyError> {
    // Rejection sampling: only bytes below 248 (= 4 × 62) are used, so `byte % 62` is
    // uniform. About 3% of bytes are rejected; a 48-byte batch almost always suffices and
    // the loop refills when it does not.
    const LIMIT: u8 = 248;
    let mut id = String::with_capacity(CLIENT_ID_LEN);
    while id.len() < CLIENT_ID_LEN {
        let batch = random_bytes::<48>()?;
        for byte in batch.into_iter().filter(|byte| *byte < LIMIT) {
            if id.len() == CLIENT_ID_LEN {
                break;
            }
            let symbol = CLIENT_ID_ALPHABET[usize::from(byte % 62)];
            id.push(char::from(symbol));
        }
    }
    // Cannot fail: the alphabet is a subset of the client-id rule. Parsing anyway keeps the
    // rule in one place instead of a second constructor that skips it.
    ClientId::parse(&id).map_err(|_| KeyError::Random)
}

/// A new opaque identifier: `prefix`, `_`, then 22 base64url characters of 16 random bytes
/// (128 bits), e.g. `ten_…`, `sec_…`, `key_…`. Used for database ids and key ids.
pub fn generate_id(prefix: &str) -> Result<String, KeyError> {
    let bytes = random_bytes::<16>()?;
    let mut id = String::with_capacity(prefix.len() + 1 + 22);
    id.push_str(prefix);
    id.push('_');
    URL_SAFE_NO_PAD.encode_string(bytes, &mut id);
    Ok(id)
}

/// A new token id (`jti`): 22 base64url characters of 16 random bytes (128 bits).
pub fn generate_jti() -> Result<String, KeyError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_base64url(text: &str) -> bool {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn client_secrets() -> Result<(), KeyError> {
        let secrets = [generate_client_secret()?, generate_client_secret()?];
        for secret in &secrets {
            let text = secret.expose();
            assert_eq!(text.len(), 49);
            let body = text.strip_prefix("tgsec_").unwrap_or_default();
            assert_eq!(body.len(), 43);
            assert!(is_base64url(body));
            assert_eq!(URL_SAFE_NO_PAD.decode(body).map(|b| b.len()), Ok(32));
        }
        assert_ne!(secrets[0].expose(), secrets[1].expose());
        Ok(())
    }

    #[test]
    fn client_ids() -> Result<(), KeyError> {
        let ids = (0..64)
            .map(|_| generate_client_id())
            .collect::<Result<Vec<_>, _>>()?;
        for id in &ids {
            assert_eq!(id.as_str().len(), CLIENT_ID_LEN);
            assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(ClientId::parse(id.as_str()).as_ref(), Ok(id));
        }
        let distinct: HashSet<&str> = ids.iter().map(ClientId::as_str).collect();
        assert_eq!(distinct.len(), ids.len());
        // 64 × 32 symbols: each of the 62 symbols is expected ~33 times. Missing one
        // entirely would mean a broken alphabet mapping, not bad luck (p ≈ 1e-14).
        let symbols: HashSet<u8> = ids.iter().flat_map(|id| id.as_str().bytes()).collect();
        assert_eq!(symbols.len(), 62);
        Ok(())
    }

    #[test]
    fn ids_and_jtis() -> Result<(), KeyError> {
        for prefix in ["ten", "sec", "key"] {
            let (a, b) = (generate_id(prefix)?, generate_id(prefix)?);
            for id in [&a, &b] {
                assert_eq!(id.len(), prefix.len() + 23);
                let rest = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('_'));
                assert_eq!(rest.map(str::len), Some(22));
                assert!(rest.is_some_and(is_base64url));
            }
            assert_ne!(a, b);
        }
        let (a, b) = (generate_jti()?, generate_jti()?);
        for jti in [&a, &b] {
            assert_eq!(jti.len(), 22);
            assert!(is_base64url(jti));
            assert_eq!(URL_SAFE_NO_PAD.decode(jti).map(|b| b.len()), Ok(16));
        }
        assert_ne!(a, b);
        Ok(())
    }
}
