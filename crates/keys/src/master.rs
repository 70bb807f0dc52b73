//! The master key: the one secret the operator supplies. It seals (AES-256-GCM) every
//! private key stored in the database, and the client-secret pepper is derived from it.
//!
//! Sealed format, version 1: `0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! Nonces are random; with 96-bit random nonces one key can seal about 2^32 values before
//! the collision risk matters, far beyond the number of signing keys a deployment stores.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::{hkdf, hmac};

use tollgate_domain::{Algorithm, KeyId, TenantId};

use crate::random::fill;
use crate::secret::SecretHasher;
use crate::{KeyError, SigningKey};

/// Length of a master key in bytes.
const KEY_LEN: usize = 32;

/// The first byte of every sealed value; bump it when the format changes.
const SEAL_VERSION: u8 = 0x01;

/// Version byte and nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Length of the AES-GCM tag.
const TAG_LEN: usize = 16;

/// HKDF `info` for the client-secret pepper. Changing it invalidates every stored secret
/// hash, hence the version in it.
const PEPPER_INFO: &[u8] = b"tollgate client-secret pepper v1";

/// Operators paste keys from many tools, so both alphabets are accepted, padded or not.
const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64_STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

/// The 256-bit master key, held as its expanded AES key and the derived pepper; the raw
/// bytes are not kept.
pub struct MasterKey {
    aead: LessSafeKey,
    pepper: hmac::Key,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses a master key: 64 hex digits, or base64 (standard or URL-safe alphabet, padded
    /// or not) of exactly 32 bytes. Surrounding whitespace is ignored. Errors say what is
    /// wrong without echoing the text.
    pub fn parse(text: &str) -> Result<MasterKey, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::InvalidMasterKey("is empty"));
        }
        let all_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
        if all_hex && text.len() == 2 * KEY_LEN {
            return Self::from_bytes(&decode_hex(text)?);
        }
        // Hex of the wrong length is often also valid base64, so base64 is tried before
        // complaining about the hex; a real base64 key is all hex digits with probability
        // (22/64)^43, so an all-hex failure is reported as hex.
        let decoded = BASE64_STANDARD_ANY
            .decode(text)
            .or_else(|_| BASE64_URL_SAFE_ANY.decode(text));
        if let Some(bytes) = decoded.as_deref().ok().and_then(|b| b.try_into().ok()) {
            return Self::from_bytes(&bytes);
        }
        Err(match decoded {
            _ if all_hex && text.len() % 2 == 1 => {
                KeyError::InvalidMasterKey("has an odd number of hex digits")
            }
            _ if all_hex => KeyError::MasterKeyLength {
                encoding: "hex",
                len: text.len() / 2,
            },
            Ok(bytes) => KeyError::MasterKeyLength {
                encoding: "base64",
                len: bytes.len(),
            },
            Err(_) => KeyError::InvalidMasterKey("must be 64 hex digits or base64 of 32 bytes"),
        })
    }

    /// Generates a new master key from the CSPRNG. The string is its base64url (unpadded)
    /// encoding, which [`MasterKey::parse`] accepts; show it to the operator once.
    pub fn generate() -> Result<(MasterKey, String), KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        fill(&mut bytes)?;
        Ok((Self::from_bytes(&bytes)?, URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Expands the raw key into the AES key schedule and the pepper, once.
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<MasterKey, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::InvalidMasterKey("rejected by aes-256-gcm"))?;
        // HKDF-SHA-256 with an empty salt (RFC 5869: equivalent to HashLen zero bytes). The
        // master key is already uniform, but extract-then-expand keeps the derivation
        // textbook and domain-separated by `info`.
        let pepper = hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(bytes)
            .expand(&[PEPPER_INFO], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(|_| KeyError::InvalidMasterKey("pepper derivation failed"))?;
        Ok(MasterKey {
            aead: LessSafeKey::new(unbound),
            pepper,
        })
    }

    /// Encrypts and authenticates `plaintext`, binding it to `aad` (which is not stored:
    /// the same `aad` must be given to [`MasterKey::open`]). Output: `0x01 || nonce ||
    /// ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill(&mut nonce)?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        sealed.push(SEAL_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed[HEADER_LEN..],
            )
            .map_err(|_| KeyError::Encrypt)?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    /// Decrypts a value made by [`MasterKey::seal`] with the same `aad`. Every failure is
    /// the same [`KeyError::Decrypt`], so callers cannot tell (or leak) which check failed.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let Some((&SEAL_VERSION, rest)) = sealed.split_first() else {
            return Err(KeyError::Decrypt);
        };
        let Some((nonce, ciphertext)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return Err(KeyError::Decrypt);
        };
        if ciphertext.len() < TAG_LEN {
            return Err(KeyError::Decrypt);
        }
        let mut buffer = ciphertext.to_vec();
        let plaintext_len = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| KeyError::Decrypt)?
            .len();
        buffer.truncate(plaintext_len);
        Ok(buffer)
    }

    /// Seals a tenant's private signing key (PKCS#8) for storage, bound to the tenant's id and
    /// the key's `kid` (see [`signing_key_aad`]): a sealed key copied to another row does not
    /// open.
    pub fn seal_signing_key(
        &self,
        tenant: &TenantId,
        kid: &KeyId,
        pkcs8: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.seal(pkcs8, signing_key_aad(tenant, kid).as_bytes())
    }

    /// Opens a key made by [`MasterKey::seal_signing_key`] for the same tenant id and `kid`,
    /// and parses it as an `alg` key: [`KeyError::Decrypt`] if it was sealed for another row
    /// or under another master key.
    pub fn open_signing_key(
        &self,
        tenant: &TenantId,
        alg: Algorithm,
        kid: &KeyId,
        sealed: &[u8],
    ) -> Result<SigningKey, KeyError> {
        let pkcs8 = self.open(sealed, signing_key_aad(tenant, kid).as_bytes())?;
        SigningKey::from_pkcs8(alg, kid.as_str().to_owned(), &pkcs8)
    }

    /// The hasher of client secrets, keyed with the pepper derived from this master key.
    pub fn secret_hasher(&self) -> SecretHasher {
        SecretHasher::new(self.pepper.clone())
    }
}

/// The additional authenticated data that binds a sealed private signing key to its tenant
/// and kid. Part of the stored format: changing it makes every stored key unreadable.
fn signing_key_aad(tenant: &TenantId, kid: &KeyId) -> String {
    format!("tollgate signing key v1|{tenant}|{kid}")
}

/// Decodes hex the caller has already checked is `2 * KEY_LEN` hex digits.
fn decode_hex(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    fn nibble(digit: u8) -> Option<u8> {
        char::from(digit)
            .to_digit(16)
            .and_then(|value| u8::try_from(value).ok())
    }
    let mut bytes = [0u8; KEY_LEN];
    if text.len() != 2 * KEY_LEN {
        return Err(KeyError::InvalidMasterKey("must be 64 hex digits"));
    }
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => *byte = (high << 4) | low,
            _ => return Err(KeyError::InvalidMasterKey("must be 64 hex digits")),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `00 01 02 … 1f`.
    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// `0x01 || nonce 64…6f || AES-256-GCM("hello, tollgate", aad "tenant:acme")` under
    /// `KEY_HEX`, produced independently with Python's `cryptography` package. Pins the
    /// sealed format: stored keys must stay readable across releases.
    const SEALED_VECTOR: &str = "016465666768696a6b6c6d6e6f207eb20a16c576ea510e338fbb110fefcc\
                                 2737f21d12bc6863614650cb636d";

    fn hex(text: &str) -> Vec<u8> {
        text.as_bytes()
            .chunks_exact(2)
            .filter_map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
            })
            .collect()
    }

    fn parse_error(text: &str) -> Option<String> {
        MasterKey::parse(text).err().map(|error| error.to_string())
    }

    #[test]
    fn parse_accepts_every_encoding_of_the_same_key() -> Result<(), KeyError> {
        // Bytes e0…ff: the standard encoding contains '+' and '/', the URL-safe one '-' and
        // '_', so each alphabet is really exercised.
        let encodings = [
            "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF",
            "4OHi4+Tl5ufo6err7O3u7/Dx8vP09fb3+Pn6+/z9/v8=",
            "4OHi4+Tl5ufo6err7O3u7/Dx8vP09fb3+Pn6+/z9/v8",
            "4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8=",
            "4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8",
            "  \t4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8\n",
        ];
        // Keys hold no raw bytes to compare, so compare behaviour: each opens what the
        // first sealed.
        let sealed = MasterKey::parse(encodings[0])?.seal(b"same key", b"")?;
        for text in encodings {
            assert_eq!(
                MasterKey::parse(text)?.open(&sealed, b""),
                Ok(b"same key".to_vec()),
                "{text:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn parse_rejects_with_a_reason() {
        let cases = [
            ("", "invalid master key: is empty"),
            ("  \n", "invalid master key: is empty"),
            (
                &KEY_HEX[..63],
                "invalid master key: has an odd number of hex digits",
            ),
            (
                &KEY_HEX[..62],
                "invalid master key: must be 32 bytes, but hex decodes to 31 bytes",
            ),
            (
                &KEY_HEX[..32],
                "invalid master key: must be 32 bytes, but hex decodes to 16 bytes",
            ),
            (
                "AAECAwQFBgcICQoLDA0ODw",
                "invalid master key: must be 32 bytes, but base64 decodes to 16 bytes",
            ),
            (
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==",
                "invalid master key: must be 32 bytes, but base64 decodes to 34 bytes",
            ),
            (
                "not a key at all!",
                "invalid master key: must be 64 hex digits or base64 of 32 bytes",
            ),
        ];
        let hex66 = format!("{KEY_HEX}20");
        let not_hex64 = format!("{}zz", &KEY_HEX[..62]);
        let owned = [
            (
                hex66.as_str(),
                "invalid master key: must be 32 bytes, but hex decodes to 33 bytes",
            ),
            (
                not_hex64.as_str(),
                "invalid master key: must be 32 bytes, but base64 decodes to 48 bytes",
            ),
        ];
        for (text, expected) in cases.into_iter().chain(owned) {
            assert_eq!(parse_error(text).as_deref(), Some(expected), "{text:?}");
        }
    }

    #[test]
    fn errors_never_echo_the_key() {
        let text = format!("{}!", &KEY_HEX[..40]);
        let message = parse_error(&text).unwrap_or_default();
        assert!(!message.contains(&KEY_HEX[..8]), "{message}");
    }

    #[test]
    fn generate_round_trips_through_parse() -> Result<(), KeyError> {
        let (key, text) = MasterKey::generate()?;
        let (_, other) = MasterKey::generate()?;
        assert_eq!(text.len(), 43);
        assert_ne!(text, other);
        let sealed = key.seal(b"payload", b"aad")?;
        assert_eq!(
            MasterKey::parse(&text)?.open(&sealed, b"aad"),
            Ok(b"payload".to_vec())
        );
        Ok(())
    }

    #[test]
    fn debug_is_redacted() -> Result<(), KeyError> {
        assert_eq!(format!("{:?}", MasterKey::parse(KEY_HEX)?), "MasterKey(..)");
        Ok(())
    }

    #[test]
    fn seal_open_round_trip() -> Result<(), KeyError> {
        let key = MasterKey::parse(KEY_HEX)?;
        for (plaintext, aad) in [
            (&b""[..], &b""[..]),
            (b"x", b""),
            (b"a pkcs8 document", b"tenant:acme key:key_1"),
            (&[0u8; 4096], b"large"),
        ] {
            let sealed = key.seal(plaintext, aad)?;
            assert_eq!(sealed.len(), 1 + 12 + plaintext.len() + 16);
            assert_eq!(sealed[0], 0x01);
            assert_eq!(key.open(&sealed, aad), Ok(plaintext.to_vec()));
        }
        // Fresh nonce each time: sealing the same input twice differs.
        assert_ne!(key.seal(b"same", b"")?, key.seal(b"same", b"")?);
        Ok(())
    }

    #[test]
    fn a_signing_key_opens_only_for_its_tenant_and_kid() -> Result<(), KeyError> {
        let master = MasterKey::parse(KEY_HEX)?;
        let (key, pkcs8) = SigningKey::generate(Algorithm::Es256, "key_1".to_owned())?;
        let (tenant, kid) = (TenantId::new("ten_1"), KeyId::new("key_1"));
        let sealed = master.seal_signing_key(&tenant, &kid, &pkcs8)?;
        let opened = master.open_signing_key(&tenant, Algorithm::Es256, &kid, &sealed)?;
        assert_eq!(opened.public_jwk(), key.public_jwk());
        // The stored format: the binding is this exact text, so keys sealed before still open.
        assert_eq!(
            master.open(&sealed, b"tollgate signing key v1|ten_1|key_1"),
            Ok(pkcs8)
        );
        for (tenant_id, kid) in [("ten_2", "key_1"), ("ten_1", "key_2")] {
            assert!(matches!(
                master.open_signing_key(
                    &TenantId::new(tenant_id),
                    Algorithm::Es256,
                    &KeyId::new(kid),
                    &sealed
                ),
                Err(KeyError::Decrypt)
            ));
        }
        Ok(())
    }

    #[test]
    fn opens_an_independently_produced_vector() -> Result<(), KeyError> {
        let key = MasterKey::parse(KEY_HEX)?;
        assert_eq!(
            key.open(&hex(SEALED_VECTOR), b"tenant:acme"),
            Ok(b"hello, tollgate".to_vec())
        );
        Ok(())
    }

    #[test]
    fn open_fails_on_any_tampering() -> Result<(), KeyError> {
        let key = MasterKey::parse(KEY_HEX)?;
        let (other, _) = MasterKey::generate()?;
        let sealed = key.seal(b"secret pkcs8", b"aad")?;
        let flipped = |index: usize| {
            let mut copy = sealed.clone();
            copy[index] ^= 0x01;
            copy
        };
        let last = sealed.len() - 1;
        let cases: [(&str, &MasterKey, Vec<u8>, &[u8]); 11] = [
            ("wrong key", &other, sealed.clone(), b"aad"),
            ("wrong aad", &key, sealed.clone(), b"aaX"),
            ("missing aad", &key, sealed.clone(), b""),
            ("unknown version", &key, flipped(0), b"aad"),
            ("tampered nonce", &key, flipped(1), b"aad"),
            ("tampered ciphertext", &key, flipped(13), b"aad"),
            ("tampered tag", &key, flipped(last), b"aad"),
            ("truncated tag", &key, sealed[..last].to_vec(), b"aad"),
            ("header only", &key, sealed[..13].to_vec(), b"aad"),
            ("version only", &key, vec![0x01], b"aad"),
            ("empty", &key, Vec::new(), b"aad"),
        ];
        for (case, key, input, aad) in cases {
            assert_eq!(key.open(&input, aad), Err(KeyError::Decrypt), "{case}");
        }
        // Shortest valid value: empty plaintext, header plus tag.
        let empty = key.seal(b"", b"")?;
        assert_eq!(empty.len(), 29);
        assert_eq!(key.open(&empty[..28], b""), Err(KeyError::Decrypt));
        assert_eq!(KeyError::Decrypt.to_string(), "decryption failed");
        Ok(())
    }
}
