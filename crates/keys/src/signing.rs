//! Token signing keys: generation, loading from PKCS#8, public JWKs and compact-JWS access
//! tokens (RFC 9068 `at+jwt`).
//!
//! ring does all the cryptography. The `rsa` crate is used for one thing only, generating
//! RSA-2048 private keys, which ring cannot do; the key goes straight to PKCS#8 and into
//! ring. (That also keeps the `rsa` crate's non-constant-time private-key operations,
//! RUSTSEC-2023-0071, off every path that signs.)
//!
//! Everything per key is computed once, when the key is loaded: the parsed key pair, the
//! encoded JWS header and the public JWK. Signing serialises the claims, encodes them into
//! a buffer sized up front and signs that buffer in place.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rsa::PublicKeyComponents;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::rand_core::{CryptoRng, RngCore};
use serde::Serialize;
use serde_json::{Value, json};
use tollgate_domain::{AccessTokenClaims, Algorithm};

use crate::KeyError;
use crate::random::system_random;

/// The `typ` of every token (RFC 9068 §2.1).
const TOKEN_TYPE: &str = "at+jwt";

/// Size of generated RSA keys.
const RSA_BITS: usize = 2048;

/// The largest RSA modulus ring accepts (4096 bits), so an RSA signature always fits a
/// stack buffer of this size.
const RSA_MAX_SIGNATURE_LEN: usize = 512;

/// Claims of a typical token serialise to 350–500 bytes; starting there avoids regrowing.
const CLAIMS_CAPACITY: usize = 512;

/// A private key that signs access tokens. `Send + Sync`: share one per key across threads.
pub struct SigningKey {
    kid: String,
    pair: KeyPair,
    /// base64url of the JWS protected header, computed once.
    encoded_header: String,
    /// The public JWK, computed once.
    jwk: Value,
}

/// The parsed private key, ready to sign.
enum KeyPair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// The JWS protected header. Field order is serialisation order: `alg`, `typ`, `kid`.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish()
    }
}

impl SigningKey {
    /// Generates a new key for `alg`. Returns the key and its PKCS#8 (DER) encoding, which
    /// the caller seals with the master key and stores. RS256 generation takes a noticeable
    /// fraction of a second; the others are instant.
    pub fn generate(alg: Algorithm, kid: String) -> Result<(SigningKey, Vec<u8>), KeyError> {
        let rng = system_random();
        let failed = || KeyError::KeyGeneration { alg };
        let pkcs8 = match alg {
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| failed())?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
            Algorithm::Rs256 => generate_rsa_pkcs8()?,
        };
        let key = Self::from_pkcs8(alg, kid, &pkcs8)?;
        Ok((key, pkcs8))
    }

    /// Loads a key from its PKCS#8 (DER) encoding, as returned by [`SigningKey::generate`].
    /// Ed25519 keys must be PKCS#8 v2 (with the public key, which is checked); RSA keys must
    /// be 2048 to 4096 bits.
    pub fn from_pkcs8(alg: Algorithm, kid: String, pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let rejected = |error: ring::error::KeyRejected| KeyError::rejected(alg, &error);
        let pair = match alg {
            Algorithm::Es256 => KeyPair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &system_random())
                    .map_err(rejected)?,
            ),
            Algorithm::EdDsa => {
                KeyPair::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?)
            }
            Algorithm::Rs256 => KeyPair::Rs256(RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?),
        };
        let header = serde_json::to_vec(&Header {
            alg: alg.as_str(),
            typ: TOKEN_TYPE,
            kid: &kid,
        })
        .map_err(|_| KeyError::Serialize)?;
        let jwk = pair.public_jwk(&kid)?;
        Ok(SigningKey {
            encoded_header: URL_SAFE_NO_PAD.encode(header),
            kid,
            pair,
            jwk,
        })
    }

    /// The key id (`kid`), in every token header and in the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn alg(&self) -> Algorithm {
        match self.pair {
            KeyPair::Es256(_) => Algorithm::Es256,
            KeyPair::EdDsa(_) => Algorithm::EdDsa,
            KeyPair::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// The public key as a JWK (RFC 7517/7518/8037) with `kid`, `alg` and `use: sig`.
    /// Public members only.
    pub fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Signs `claims` into a compact JWS: `header.payload.signature`, each part base64url
    /// without padding. ES256 signatures are the fixed 64-byte `r || s` form (RFC 7518
    /// §3.4); RS256 is RSASSA-PKCS1-v1_5 with SHA-256.
    pub fn sign_token(&self, claims: &AccessTokenClaims) -> Result<String, KeyError> {
        let mut payload = Vec::with_capacity(CLAIMS_CAPACITY);
        serde_json::to_writer(&mut payload, claims).map_err(|_| KeyError::Serialize)?;

        let capacity = self.encoded_header.len()
            + 1
            + encoded_len(payload.len())
            + 1
            + encoded_len(self.pair.signature_len());
        let mut token = String::with_capacity(capacity);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);

        // The signing input is the token so far; the signature is appended to it.
        let signing_input = token.as_bytes();
        match &self.pair {
            KeyPair::Es256(pair) => {
                let signature = pair
                    .sign(&system_random(), signing_input)
                    .map_err(|_| KeyError::Sign)?;
                push_signature(&mut token, signature.as_ref());
            }
            KeyPair::EdDsa(pair) => {
                let signature = pair.sign(signing_input);
                push_signature(&mut token, signature.as_ref());
            }
            KeyPair::Rs256(pair) => {
                let mut buffer = [0u8; RSA_MAX_SIGNATURE_LEN];
                let signature = buffer
                    .get_mut(..pair.public().modulus_len())
                    .ok_or(KeyError::Sign)?;
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &system_random(),
                    signing_input,
                    signature,
                )
                .map_err(|_| KeyError::Sign)?;
                push_signature(&mut token, signature);
            }
        }
        Ok(token)
    }
}

impl KeyPair {
    /// Length of a signature in bytes.
    fn signature_len(&self) -> usize {
        match self {
            KeyPair::Es256(_) | KeyPair::EdDsa(_) => 64,
            KeyPair::Rs256(pair) => pair.public().modulus_len(),
        }
    }

    /// The public JWK. Members are read from ring's public key, which never exposes
    /// private components, so none can leak into the JWK.
    fn public_jwk(&self, kid: &str) -> Result<Value, KeyError> {
        Ok(match self {
            KeyPair::Es256(pair) => {
                // ring's P-256 public key is the uncompressed SEC1 point 04 || x || y.
                let point = pair.public_key().as_ref();
                let (Some(&0x04), Some(x), Some(y)) =
                    (point.first(), point.get(1..33), point.get(33..65))
                else {
                    return Err(KeyError::InvalidPrivateKey {
                        alg: Algorithm::Es256,
                        reason: "unexpected public key encoding".to_owned(),
                    });
                };
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                    "kid": kid,
                    "alg": Algorithm::Es256.as_str(),
                    "use": "sig",
                })
            }
            KeyPair::EdDsa(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                "kid": kid,
                "alg": Algorithm::EdDsa.as_str(),
                "use": "sig",
            }),
            KeyPair::Rs256(pair) => {
                // Components come big-endian with leading zeros stripped (RFC 7518 §6.3.1).
                let components = PublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(&components.n),
                    "e": URL_SAFE_NO_PAD.encode(&components.e),
                    "kid": kid,
                    "alg": Algorithm::Rs256.as_str(),
                    "use": "sig",
                })
            }
        })
    }
}

/// The JWKS document `{"keys":[…]}` of the given public JWKs, as compact JSON.
pub fn jwks_json<'a>(keys: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::from(r#"{"keys":["#);
    for (index, key) in keys.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        // `Value`'s Display is compact JSON and writing to a String cannot fail.
        out.push_str(&key.to_string());
    }
    out.push_str("]}");
    out
}

/// Appends `.` and the encoded signature.
fn push_signature(token: &mut String, signature: &[u8]) {
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, token);
}

/// Length of `len` bytes in unpadded base64; only a capacity hint, so overflow (which
/// cannot happen for these sizes) just means no hint.
fn encoded_len(len: usize) -> usize {
    base64::encoded_len(len, false).unwrap_or(0)
}

/// A new RSA-2048 private key (e = 65537) as PKCS#8 DER, generated by the `rsa` crate from
/// ring's CSPRNG.
fn generate_rsa_pkcs8() -> Result<Vec<u8>, KeyError> {
    let failed = KeyError::KeyGeneration {
        alg: Algorithm::Rs256,
    };
    let mut rng = RingRng { failed: false };
    let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(|_| failed.clone())?;
    if rng.failed {
        // Some randomness was missing: the key may be predictable. Discard it.
        return Err(KeyError::Random);
    }
    let document = key.to_pkcs8_der().map_err(|_| failed)?;
    Ok(document.as_bytes().to_vec())
}

/// ring's `SystemRandom` behind the `rand_core` traits the `rsa` crate takes, so that one
/// CSPRNG serves the whole crate. `fill_bytes` cannot report failure, so it records it in
/// `failed` for the caller to check.
struct RingRng {
    failed: bool,
}

impl RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.try_fill_bytes(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        crate::random::fill(dest).map_err(|error| {
            self.failed = true;
            rsa::rand_core::Error::new(error)
        })
    }
}

impl CryptoRng for RingRng {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::error::Error;

    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use tollgate_domain::{Clock, GRANT_TYPE_CLIENT_CREDENTIALS, SystemClock};

    use super::*;

    type TestResult = Result<(), Box<dyn Error>>;

    fn claims() -> AccessTokenClaims {
        let now = SystemClock.now();
        AccessTokenClaims {
            iss: "http://acme.hub.localhost:8080/".to_owned(),
            sub: "abc123@client".to_owned(),
            aud: "https://archive.example.com/".to_owned(),
            iat: now,
            nbf: now,
            exp: now + 3600,
            jti: "bjJ2mN0rZl9XkWq3sT5uVw".to_owned(),
            cid: "ten_abc".to_owned(),
            sid: "sec_def".to_owned(),
            scp: vec!["archive:read".to_owned(), "archive:write".to_owned()],
            scope: "archive:read archive:write".to_owned(),
            client_id: "abc123".to_owned(),
            gty: GRANT_TYPE_CLIENT_CREDENTIALS.to_owned(),
        }
    }

    fn member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, Box<dyn Error>> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("jwk has no string member {name:?}").into())
    }

    fn decoded_len(text: &str) -> Result<usize, Box<dyn Error>> {
        Ok(URL_SAFE_NO_PAD.decode(text)?.len())
    }

    /// The JWK's members, its shape, and a jsonwebtoken key built from it.
    fn check_jwk(alg: Algorithm, kid: &str, jwk: &Value) -> Result<DecodingKey, Box<dyn Error>> {
        let names: BTreeSet<&str> = jwk
            .as_object()
            .ok_or("jwk is not an object")?
            .keys()
            .map(String::as_str)
            .collect();
        let expected: &[&str] = match alg {
            Algorithm::Es256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
            Algorithm::EdDsa => &["alg", "crv", "kid", "kty", "use", "x"],
            Algorithm::Rs256 => &["alg", "e", "kid", "kty", "n", "use"],
        };
        assert_eq!(names, expected.iter().copied().collect());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                jwk.get(private).is_none(),
                "{alg}: private member {private}"
            );
        }
        assert_eq!(member(jwk, "kid")?, kid);
        assert_eq!(member(jwk, "alg")?, alg.as_str());
        assert_eq!(member(jwk, "use")?, "sig");
        Ok(match alg {
            Algorithm::Es256 => {
                assert_eq!(member(jwk, "kty")?, "EC");
                assert_eq!(member(jwk, "crv")?, "P-256");
                let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
                assert_eq!((decoded_len(x)?, decoded_len(y)?), (32, 32));
                DecodingKey::from_ec_components(x, y)?
            }
            Algorithm::EdDsa => {
                assert_eq!(member(jwk, "kty")?, "OKP");
                assert_eq!(member(jwk, "crv")?, "Ed25519");
                let x = member(jwk, "x")?;
                assert_eq!(decoded_len(x)?, 32);
                DecodingKey::from_ed_components(x)?
            }
            Algorithm::Rs256 => {
                assert_eq!(member(jwk, "kty")?, "RSA");
                let (n, e) = (member(jwk, "n")?, member(jwk, "e")?);
                let modulus = URL_SAFE_NO_PAD.decode(n)?;
                // 2048 bits exactly, so no leading zero byte and the top bit set.
                assert_eq!(modulus.len(), 256);
                assert!(modulus[0] >= 0x80);
                assert_eq!(e, "AQAB");
                DecodingKey::from_rsa_components(n, e)?
            }
        })
    }

    fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
        match alg {
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }

    /// Everything about one algorithm; each generates one key, so RSA's slow generation
    /// happens once.
    fn full_cycle(alg: Algorithm) -> TestResult {
        let kid = format!("key_test_{alg}");
        let (key, pkcs8) = SigningKey::generate(alg, kid.clone())?;
        assert_eq!((key.kid(), key.alg()), (kid.as_str(), alg));
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey {{ kid: {kid:?}, alg: {alg:?} }}")
        );

        // PKCS#8 round trip: same public key.
        let reloaded = SigningKey::from_pkcs8(alg, kid.clone(), &pkcs8)?;
        assert_eq!(reloaded.public_jwk(), key.public_jwk());
        let jwk = key.public_jwk();
        let decoding_key = check_jwk(alg, &kid, &jwk)?;

        let claims = claims();
        let mut validation = Validation::new(jwt_alg(alg));
        validation.set_audience(&[&claims.aud]);
        validation.set_issuer(&[&claims.iss]);
        validation.validate_nbf = true;
        // Both the generated key and its reloaded twin sign verifiable tokens.
        for signer in [&key, &reloaded] {
            let token = signer.sign_token(&claims)?;
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(
                URL_SAFE_NO_PAD.decode(parts[0])?,
                format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#).into_bytes()
            );
            assert_eq!(
                URL_SAFE_NO_PAD.decode(parts[1])?,
                serde_json::to_vec(&claims)?
            );
            let signature_len = if alg == Algorithm::Rs256 { 256 } else { 64 };
            assert_eq!(decoded_len(parts[2])?, signature_len);

            let header = decode_header(&token)?;
            assert_eq!(header.alg, jwt_alg(alg));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
            let decoded = decode::<AccessTokenClaims>(&token, &decoding_key, &validation)?;
            assert_eq!(decoded.claims, claims);

            // A changed payload no longer verifies.
            let forged_claims = AccessTokenClaims {
                scope: "admin".to_owned(),
                ..claims.clone()
            };
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims)?),
                parts[2]
            );
            assert!(decode::<AccessTokenClaims>(&forged, &decoding_key, &validation).is_err());
        }
        Ok(())
    }

    #[test]
    fn es256_full_cycle() -> TestResult {
        full_cycle(Algorithm::Es256)
    }

    #[test]
    fn eddsa_full_cycle() -> TestResult {
        full_cycle(Algorithm::EdDsa)
    }

    #[test]
    fn rs256_full_cycle() -> TestResult {
        full_cycle(Algorithm::Rs256)
    }

    #[test]
    fn keys_differ_between_generations() -> TestResult {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let (a, _) = SigningKey::generate(alg, "a".to_owned())?;
            let (b, _) = SigningKey::generate(alg, "a".to_owned())?;
            assert_ne!(a.public_jwk(), b.public_jwk(), "{alg}");
            // b's public key does not verify a's tokens.
            let claims = claims();
            let mut validation = Validation::new(jwt_alg(alg));
            validation.set_audience(&[&claims.aud]);
            validation.set_issuer(&[&claims.iss]);
            let b_key = check_jwk(alg, "a", &b.public_jwk())?;
            let token = a.sign_token(&claims)?;
            assert!(decode::<AccessTokenClaims>(&token, &b_key, &validation).is_err());
        }
        Ok(())
    }

    #[test]
    fn from_pkcs8_rejects_mismatched_and_garbage_input() -> TestResult {
        let (_, es256) = SigningKey::generate(Algorithm::Es256, "k".to_owned())?;
        let (_, eddsa) = SigningKey::generate(Algorithm::EdDsa, "k".to_owned())?;
        let mut truncated = es256.clone();
        truncated.truncate(es256.len() - 1);
        let cases: [(Algorithm, &[u8], &str); 6] = [
            (
                Algorithm::Es256,
                &eddsa,
                "invalid ES256 private key: wrong algorithm",
            ),
            (
                Algorithm::EdDsa,
                &es256,
                "invalid EdDSA private key: wrong algorithm",
            ),
            (
                Algorithm::Rs256,
                &es256,
                "invalid RS256 private key: wrong algorithm",
            ),
            (
                Algorithm::Es256,
                &truncated,
                "invalid ES256 private key: invalid encoding",
            ),
            (
                Algorithm::Es256,
                b"",
                "invalid ES256 private key: invalid encoding",
            ),
            (
                Algorithm::Rs256,
                b"\x30\x00",
                "invalid RS256 private key: invalid encoding",
            ),
        ];
        for (alg, pkcs8, expected) in cases {
            let error = SigningKey::from_pkcs8(alg, "k".to_owned(), pkcs8).err();
            assert_eq!(
                error.map(|e| e.to_string()).as_deref(),
                Some(expected),
                "{alg}"
            );
        }
        Ok(())
    }

    #[test]
    fn kid_is_json_escaped_in_the_header() -> TestResult {
        let kid = r#"odd "kid" \ here"#;
        let (key, _) = SigningKey::generate(Algorithm::EdDsa, kid.to_owned())?;
        let token = key.sign_token(&claims())?;
        assert_eq!(decode_header(&token)?.kid.as_deref(), Some(kid));
        Ok(())
    }

    #[test]
    fn jwks_document() -> TestResult {
        let (a, _) = SigningKey::generate(Algorithm::Es256, "key_a".to_owned())?;
        let (b, _) = SigningKey::generate(Algorithm::EdDsa, "key_b".to_owned())?;
        let (jwk_a, jwk_b) = (a.public_jwk(), b.public_jwk());
        assert_eq!(jwks_json([]), r#"{"keys":[]}"#);
        assert_eq!(
            jwks_json([&jwk_a]),
            format!(r#"{{"keys":[{}]}}"#, serde_json::to_string(&jwk_a)?)
        );
        let document = jwks_json([&jwk_a, &jwk_b]);
        assert!(!document.contains(' ') && !document.contains('\n'));
        let parsed: Value = serde_json::from_str(&document)?;
        assert_eq!(parsed, json!({ "keys": [jwk_a, jwk_b] }));
        Ok(())
    }

    #[test]
    fn signing_key_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SigningKey>();
    }
}
