//! Tests of [`verify`] and [`KeySet`], one line per case.
//!
//! Valid tokens come from `tollgate-keys`, signed exactly as the issuer signs them. Forged and
//! odd ones are built here: header and payload JSON by hand, signed with the same PKCS#8 keys
//! loaded into ring directly (or with HMAC, or not at all), so that each case differs from a
//! valid token only in the way its name says. The hand-built path is itself checked to make
//! tokens that verify, so no refusal below is an accident of how the token was built.

use std::error::Error;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RSA_PKCS1_SHA512, RSA_PSS_SHA256, RsaEncoding, RsaKeyPair,
};
use serde_json::{Value, json};
use tollgate_domain::{AccessTokenClaims, Algorithm, GRANT_TYPE_CLIENT_CREDENTIALS};
use tollgate_keys::{SigningKey, jwks_json};

use crate::VerifyError::{
    AlgorithmMismatch, BadSignature, Expired, Malformed, NotYetValid, UnknownKey, WrongAudience,
    WrongIssuer, WrongType,
};
use crate::{Claims, Expectations, KeySet, Policy, VerifyError, verify, verify_at, verify_claims};

type Fallible<T> = Result<T, Box<dyn Error>>;
type TestResult = Fallible<()>;

const ISSUER: &str = "https://acme.tollgate.example/";
const AUDIENCE: &str = "https://archive.example.com/";
/// The leeway of [`Expectations::new`], in seconds.
const LEEWAY: i64 = 30;
/// Seconds kept between a time claim and a leeway boundary: far more than can pass between
/// signing a case and verifying it, so boundary cases cannot flake.
const MARGIN: i64 = 10;

/// Every claim of [`AccessTokenClaims`]; a Tollgate token lacking any of them is malformed.
const CLAIM_NAMES: [&str; 13] = [
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "cid",
    "sid",
    "scp",
    "scope",
    "client_id",
    "gty",
];

/// The system clock, which is also what jsonwebtoken checks `exp` and `nbf` against.
// jsonwebtoken reads the system clock itself: these tests must too.
#[allow(clippy::disallowed_methods)]
fn now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
}

/// The claims of a token issued now, valid for an hour.
fn claims() -> AccessTokenClaims {
    claims_at(now())
}

/// The claims of a token issued at `iat`, valid for an hour.
fn claims_at(iat: i64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.to_owned(),
        sub: "abc123@client".to_owned(),
        aud: AUDIENCE.to_owned(),
        iat,
        nbf: iat,
        exp: iat + 3600,
        jti: "bjJ2mN0rZl9XkWq3sT5uVw".to_owned(),
        cid: "ten_abc".to_owned(),
        sid: "sec_def".to_owned(),
        scp: vec!["archive:read".to_owned()],
        scope: "archive:read".to_owned(),
        client_id: "abc123".to_owned(),
        gty: GRANT_TYPE_CLIENT_CREDENTIALS.to_owned(),
    }
}

fn payload(claims: &AccessTokenClaims) -> Fallible<Value> {
    Ok(serde_json::to_value(claims)?)
}

/// `object` with `member` set to `value` (`Value::Null` included).
fn with(mut object: Value, member: &str, value: impl Into<Value>) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert(member.to_owned(), value.into());
    }
    object
}

/// `object` without `member`.
fn without(mut object: Value, member: &str) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove(member);
    }
    object
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of raw header and payload bytes, signed by `sign`.
fn jws_bytes(
    header: &[u8],
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Fallible<Vec<u8>>,
) -> Fallible<String> {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&signature)))
}

/// A compact JWS of `header` and `payload` as JSON, signed by `sign`.
fn jws(
    header: &Value,
    payload: &Value,
    sign: impl FnOnce(&[u8]) -> Fallible<Vec<u8>>,
) -> Fallible<String> {
    jws_bytes(
        &serde_json::to_vec(header)?,
        &serde_json::to_vec(payload)?,
        sign,
    )
}

/// The three parts of a compact JWS.
fn parts(token: &str) -> Fallible<[&str; 3]> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok([header, payload, signature]),
        _ => Err(format!("not a compact JWS: {token:?}").into()),
    }
}

/// `encoded` with the lowest bit of its last base64url character flipped. That bit is
/// padding for 64- and 256-byte signatures: the bytes decode the same, only the text is not
/// canonical.
fn flip_last_bit(encoded: &str) -> Fallible<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = encoded.as_bytes().to_vec();
    let last = bytes.last_mut().ok_or("empty")?;
    let index = ALPHABET
        .iter()
        .position(|c| c == last)
        .ok_or("not base64url")?;
    *last = *ALPHABET.get(index ^ 1).ok_or("out of the alphabet")?;
    Ok(String::from_utf8(bytes)?)
}

/// A JWK Set document of `keys`.
fn document(keys: impl IntoIterator<Item = Value>) -> String {
    json!({ "keys": keys.into_iter().collect::<Vec<_>>() }).to_string()
}

/// One private key twice over: tollgate-keys' [`SigningKey`] (the issuer's own code) and the
/// same PKCS#8 in ring, to sign any header and payload.
struct TestKey {
    alg: Algorithm,
    signing: SigningKey,
    pair: RingPair,
}

enum RingPair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl TestKey {
    fn generate(alg: Algorithm, kid: &str) -> Fallible<Self> {
        let (signing, pkcs8) = SigningKey::generate(alg, kid.to_owned())?;
        let rejected = |error: ring::error::KeyRejected| error.to_string();
        let pair = match alg {
            Algorithm::Es256 => RingPair::Es256(
                EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &pkcs8,
                    &SystemRandom::new(),
                )
                .map_err(rejected)?,
            ),
            Algorithm::EdDsa => {
                RingPair::EdDsa(Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(rejected)?)
            }
            Algorithm::Rs256 => RingPair::Rs256(RsaKeyPair::from_pkcs8(&pkcs8).map_err(rejected)?),
        };
        Ok(Self { alg, signing, pair })
    }

    fn kid(&self) -> &str {
        self.signing.kid()
    }

    /// The public JWK, as the issuer publishes it.
    fn jwk(&self) -> Value {
        self.signing.public_jwk()
    }

    /// A token signed by tollgate-keys, exactly as the issuer signs.
    fn issue(&self, claims: &AccessTokenClaims) -> Fallible<String> {
        Ok(self.signing.sign_token(claims)?)
    }

    /// The header the issuer writes: this key's `alg` and `kid`, `typ` `at+jwt`.
    fn header(&self) -> Value {
        json!({ "alg": self.alg.as_str(), "typ": "at+jwt", "kid": self.kid() })
    }

    /// [`TestKey::header`] with `member` set to `value`.
    fn header_with(&self, member: &str, value: impl Into<Value>) -> Value {
        with(self.header(), member, value)
    }

    /// [`TestKey::header`] without `member`.
    fn header_without(&self, member: &str) -> Value {
        without(self.header(), member)
    }

    /// `header.payload` signed with this key under its own algorithm, whatever the header
    /// says.
    fn sign(&self, header: &Value, payload: &Value) -> Fallible<String> {
        jws(header, payload, |input| self.signature(input))
    }

    fn signature(&self, input: &[u8]) -> Fallible<Vec<u8>> {
        match &self.pair {
            RingPair::Es256(pair) => Ok(pair
                .sign(&SystemRandom::new(), input)
                .map_err(|error| error.to_string())?
                .as_ref()
                .to_vec()),
            RingPair::EdDsa(pair) => Ok(pair.sign(input).as_ref().to_vec()),
            RingPair::Rs256(_) => self.rsa_signature(&RSA_PKCS1_SHA256, input),
        }
    }

    /// A token under header `alg`, signed by this RSA key with another padding or hash:
    /// a valid signature, but not an RS256 one.
    fn rsa_sign(
        &self,
        alg: &str,
        padding: &'static dyn RsaEncoding,
        payload: &Value,
    ) -> Fallible<String> {
        jws(&self.header_with("alg", alg), payload, |input| {
            self.rsa_signature(padding, input)
        })
    }

    fn rsa_signature(&self, padding: &'static dyn RsaEncoding, input: &[u8]) -> Fallible<Vec<u8>> {
        let RingPair::Rs256(pair) = &self.pair else {
            return Err("not an RSA key".into());
        };
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(padding, &SystemRandom::new(), input, &mut signature)
            .map_err(|error| error.to_string())?;
        Ok(signature)
    }

    /// The public key as ring holds it: the SEC1 point, the Ed25519 key, the DER
    /// `RSAPublicKey`.
    fn public_key_bytes(&self) -> Vec<u8> {
        match &self.pair {
            RingPair::Es256(pair) => pair.public_key().as_ref().to_vec(),
            RingPair::EdDsa(pair) => pair.public_key().as_ref().to_vec(),
            RingPair::Rs256(pair) => pair.public_key().as_ref().to_vec(),
        }
    }
}

/// The keys every test shares; RSA generation is slow, so it happens once.
struct Fixture {
    /// The issuer's keys, one per algorithm, with kids `es256`, `eddsa` and `rs256`.
    es: TestKey,
    ed: TestKey,
    rs: TestKey,
    /// An ES256 key the verifier has never heard of, kid `stranger`.
    stranger: TestKey,
    /// The issuer's JWKS document, as the gateway serves it.
    jwks: String,
    /// That document, parsed.
    keys: KeySet,
}

impl Fixture {
    fn new() -> Fallible<Self> {
        let es = TestKey::generate(Algorithm::Es256, "es256")?;
        let ed = TestKey::generate(Algorithm::EdDsa, "eddsa")?;
        let rs = TestKey::generate(Algorithm::Rs256, "rs256")?;
        let stranger = TestKey::generate(Algorithm::Es256, "stranger")?;
        let jwks = jwks_json([&es.jwk(), &ed.jwk(), &rs.jwk()]);
        let keys = KeySet::from_jwks_json(&jwks)?;
        Ok(Self {
            es,
            ed,
            rs,
            stranger,
            jwks,
            keys,
        })
    }

    fn all(&self) -> [&TestKey; 3] {
        [&self.es, &self.ed, &self.rs]
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| match Fixture::new() {
        Ok(fixture) => fixture,
        Err(error) => panic!("cannot build the test keys: {error}"),
    })
}

/// What [`verify`] must return.
type Expected<'a> = Result<&'a AccessTokenClaims, VerifyError>;

/// One case: its name, the token, what [`verify`] must return.
type Case<'a> = (&'a str, String, Expected<'a>);

/// Verifies each case's token against the fixture's key set, expecting [`ISSUER`] and
/// [`AUDIENCE`] with the default leeway.
#[track_caller]
fn check<'a>(prefix: &str, cases: impl IntoIterator<Item = Case<'a>>) {
    let expectations = Expectations::new(ISSUER, AUDIENCE);
    check_with(&fixture().keys, &expectations, prefix, cases);
}

/// Verifies each case's token and reports every case whose result is not the expected one.
/// [`verify_at`] the system clock's time must return the same.
///
/// Every case also goes through [`verify_claims`], the generic verifier, with the policy a
/// resource server would set for Tollgate tokens ([`tollgate_policy`]): it must come to the
/// same verdict, except where [`GENERIC_VERDICTS`] says why not.
#[track_caller]
fn check_with<'a>(
    keys: &KeySet,
    expectations: &Expectations,
    prefix: &str,
    cases: impl IntoIterator<Item = Case<'a>>,
) {
    let policy = tollgate_policy(expectations);
    let mut failures = Vec::new();
    for (case, token, expected) in cases {
        let expected = expected.cloned();
        let actual = verify(&token, keys, expectations);
        if actual != expected {
            failures.push(format!(
                "{prefix}{case}: expected {expected:?}, got {actual:?}\n    token {token:?}"
            ));
        }
        let at_now = verify_at(&token, keys, expectations, now());
        if at_now != expected {
            failures.push(format!(
                "{prefix}{case} (at now): expected {expected:?}, got {at_now:?}\n    token {token:?}"
            ));
        }
        let name = format!("{prefix}{case}");
        let generic = verify_claims(&token, keys, &policy, now());
        let verdict = GENERIC_VERDICTS
            .iter()
            .find(|(differing, _)| *differing == name)
            .map_or_else(
                || expected.as_ref().map(|_| ()).map_err(Clone::clone),
                |(_, v)| v.clone(),
            );
        let is_same = match (&generic, &verdict, &expected) {
            (Ok(claims), Ok(()), Ok(strict)) => is_generic_of(claims, strict),
            (Ok(_), Ok(()), Err(_)) => true,
            (Err(error), Err(verdict), _) => error == verdict,
            _ => false,
        };
        if !is_same {
            failures.push(format!(
                "{name} (generic): expected {verdict:?}, got {generic:?}\n    token {token:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// What a resource server sets to accept Tollgate tokens through [`verify_claims`]: the same
/// issuer, audience and leeway, and every claim Tollgate issues required.
fn tollgate_policy(expectations: &Expectations) -> Policy {
    Policy::new(&expectations.issuer, &expectations.audience)
        .with_leeway_seconds(expectations.leeway_seconds)
        .with_required_claims(CLAIM_NAMES)
}

/// Cases where [`verify_claims`] rightly differs from [`verify`]: the generic claims accept
/// what other issuers write but Tollgate's fixed claim set does not.
#[rustfmt::skip]
const GENERIC_VERDICTS: &[(&str, Result<(), VerifyError>)] = &[
    // RFC 7519 allows `aud` to be an array; ours is in it, or not.
    ("audience list, ours",    Ok(())),
    ("audience list, both",    Ok(())),
    ("audience list, another", Err(WrongAudience)),
    // Some issuers write `scp` as a space-delimited string; `scope` is read first anyway.
    ("scp a string",           Ok(())),
];

/// Whether the generic claims say what Tollgate's claims say.
fn is_generic_of(generic: &Claims, strict: &AccessTokenClaims) -> bool {
    generic.issuer == strict.iss
        && generic.subject.as_deref() == Some(strict.sub.as_str())
        && generic.audiences == [strict.aud.clone()]
        && generic.expires_at == strict.exp
        && generic.not_before == Some(strict.nbf)
        && generic.issued_at == Some(strict.iat)
        && generic.token_id.as_deref() == Some(strict.jti.as_str())
        && generic.client_id.as_deref() == Some(strict.client_id.as_str())
        && generic.scopes.join(" ") == strict.scope
        && generic.claim("cid") == Some(&Value::from(strict.cid.as_str()))
}

/// Issues each case's claims with the ES256 key (a genuine signature) and checks the token;
/// `Ok(())` expects exactly those claims back.
#[track_caller]
fn check_claims(cases: &[(&str, AccessTokenClaims, Result<(), VerifyError>)]) -> TestResult {
    let mut tokens = Vec::with_capacity(cases.len());
    for (case, claims, expected) in cases {
        let token = fixture().es.issue(claims)?;
        tokens.push((*case, token, expected.clone().map(|()| claims)));
    }
    check("", tokens);
    Ok(())
}

/// Asserts that jsonwebtoken itself, told to trust `key` for `alg`, accepts `token`: the
/// forgery is sound, so when [`verify`] refuses it, its own policy is why.
#[track_caller]
fn assert_sound(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: jsonwebtoken::Algorithm,
    claims: &AccessTokenClaims,
) -> TestResult {
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let decoded = jsonwebtoken::decode::<AccessTokenClaims>(token, key, &validation)?;
    assert_eq!(&decoded.claims, claims, "{alg:?} token {token:?}");
    Ok(())
}

/// Parses each case's JWKS document and checks the number of keys kept, or that the error is
/// `InvalidKeySet` with a message starting with the given text (a prefix only where the
/// rest comes from serde or jsonwebtoken).
#[track_caller]
fn check_key_sets(cases: &[(&str, String, Result<usize, String>)]) {
    let mut failures = Vec::new();
    for (case, jwks, expected) in cases {
        let actual = KeySet::from_jwks_json(jwks);
        let matches = match (&actual, expected) {
            (Ok(keys), Ok(len)) => keys.len() == *len && keys.is_empty() == (*len == 0),
            (Err(VerifyError::InvalidKeySet(message)), Err(start)) => message.starts_with(start),
            _ => false,
        };
        if !matches {
            failures.push(format!("{case}: expected {expected:?}, got {actual:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The `InvalidKeySet` message for a key lacking `member`.
fn lacks(member: &str) -> Result<usize, String> {
    Err(format!("key lacks the {member:?} member"))
}

/// An `InvalidKeySet` message starting with `start`.
fn invalid(start: &str) -> Result<usize, String> {
    Err(start.to_owned())
}

#[test]
fn valid_tokens_of_every_algorithm_yield_their_exact_claims() -> TestResult {
    let f = fixture();
    let claims = claims();
    let p = payload(&claims)?;
    for key in f.all() {
        let typed = |typ: &str| key.sign(&key.header_with("typ", typ), &p);
        #[rustfmt::skip]
        let cases = [
            ("issued by tollgate-keys", key.issue(&claims)?,          Ok(&claims)),
            // The hand-built path every forgery below takes makes valid tokens too.
            ("signed here",             key.sign(&key.header(), &p)?, Ok(&claims)),
            ("typ application/at+jwt",  typed("application/at+jwt")?, Ok(&claims)),
            // Media types are case-insensitive (RFC 7515 §4.1.9).
            ("typ AT+JWT",              typed("AT+JWT")?,             Ok(&claims)),
        ];
        check(&format!("{}: ", key.alg), cases);
    }
    // Claims and header members Tollgate does not know are ignored.
    let es = &f.es;
    let extra_claim = with(p.clone(), "act", json!({ "sub": "someone" }));
    #[rustfmt::skip]
    let cases = [
        ("unknown claim",         es.sign(&es.header(), &extra_claim)?,      Ok(&claims)),
        ("unknown header member", es.sign(&es.header_with("x-a", "1"), &p)?, Ok(&claims)),
    ];
    check("", cases);
    Ok(())
}

#[test]
fn verify_at_judges_time_by_the_clock_it_is_given() -> TestResult {
    let issued_at = now();
    let claims = claims_at(issued_at);
    let token = fixture().es.issue(&claims)?;
    let keys = &fixture().keys;
    let mut expectations = Expectations::new(ISSUER, AUDIENCE);
    expectations.leeway_seconds = 0;
    let at = |time: i64| verify_at(&token, keys, &expectations, time);
    assert_eq!(at(issued_at).as_ref(), Ok(&claims));
    assert_eq!(at(claims.exp).as_ref(), Ok(&claims));
    assert_eq!(at(claims.exp + 1), Err(Expired));
    assert_eq!(at(issued_at - 1), Err(NotYetValid));
    // Expired and for another audience: the time is judged first, as `verify` does.
    expectations.audience = "https://other.example.com/".to_owned();
    assert_eq!(
        verify_at(&token, keys, &expectations, claims.exp + 1),
        Err(Expired)
    );
    assert_eq!(
        verify_at(&token, keys, &expectations, issued_at),
        Err(WrongAudience)
    );
    Ok(())
}

#[test]
fn alg_none_is_refused() -> TestResult {
    let f = fixture();
    let p = payload(&claims())?;
    // jsonwebtoken's `Algorithm` has no `none`, so the header does not even parse: no key or
    // signature is ever looked at.
    for key in f.all() {
        let none = |alg: &str| jws(&key.header_with("alg", alg), &p, |_| Ok(Vec::new()));
        let unsigned = none("none")?;
        let [header, payload, _] = parts(&unsigned)?;
        let real = key.sign(&key.header_with("alg", "none"), &p)?;
        #[rustfmt::skip]
        let cases = [
            ("alg none, empty signature",   none("none")?,                 Err(Malformed)),
            ("alg None, empty signature",   none("None")?,                 Err(Malformed)),
            ("alg NONE, empty signature",   none("NONE")?,                 Err(Malformed)),
            ("alg none, real signature",    real,                          Err(Malformed)),
            ("alg none, no signature part", format!("{header}.{payload}"), Err(Malformed)),
        ];
        check(&format!("{} kid, ", key.alg), cases);
    }
    Ok(())
}

#[test]
fn hmac_keyed_with_the_public_key_is_refused() -> TestResult {
    let f = fixture();
    let claims = claims();
    let p = payload(&claims)?;
    let macs = [
        ("HS256", hmac::HMAC_SHA256, jsonwebtoken::Algorithm::HS256),
        ("HS384", hmac::HMAC_SHA384, jsonwebtoken::Algorithm::HS384),
        ("HS512", hmac::HMAC_SHA512, jsonwebtoken::Algorithm::HS512),
    ];
    for key in f.all() {
        let alg = key.alg;
        // Everything public an attacker could try as the HMAC secret.
        let secrets = [
            ("JWK JSON", key.jwk().to_string().into_bytes()),
            ("JWKS document", f.jwks.clone().into_bytes()),
            ("raw public key", key.public_key_bytes()),
        ];
        for (secret_name, secret) in &secrets {
            for (mac_name, mac_alg, jwt_alg) in macs {
                let mac_key = hmac::Key::new(mac_alg, secret);
                let mac = |input: &[u8]| -> Fallible<Vec<u8>> {
                    Ok(hmac::sign(&mac_key, input).as_ref().to_vec())
                };
                let forged = jws(&key.header_with("alg", mac_name), &p, mac)?;
                let secret_key = jsonwebtoken::DecodingKey::from_secret(secret);
                assert_sound(&forged, &secret_key, jwt_alg, &claims)?;
                #[rustfmt::skip]
                let cases = [
                    ("",                forged,                       Err(AlgorithmMismatch)),
                    // Under the key's own `alg`, the MAC is checked as a signature, and fails.
                    (", the key's alg", jws(&key.header(), &p, mac)?, Err(BadSignature)),
                ];
                check(
                    &format!("{alg} key, {mac_name} keyed with its {secret_name}"),
                    cases,
                );
            }
        }
    }
    Ok(())
}

#[test]
fn header_alg_other_than_the_keys_is_refused() -> TestResult {
    let f = fixture();
    let claims = claims();
    let p = payload(&claims)?;
    let (es, ed, rs) = (&f.es, &f.ed, &f.rs);
    let re = |key: &TestKey, alg: &str| key.sign(&key.header_with("alg", alg), &p);

    // Signatures the RSA key really made, under algorithms other than its RS256: sound, as
    // jsonwebtoken confirms, and still refused.
    let pss = rs.rsa_sign("PS256", &RSA_PSS_SHA256, &p)?;
    let sha512 = rs.rsa_sign("RS512", &RSA_PKCS1_SHA512, &p)?;
    let jwk = rs.jwk();
    let (n, e) = (jwk["n"].as_str().ok_or("n")?, jwk["e"].as_str().ok_or("e")?);
    let rsa_key = jsonwebtoken::DecodingKey::from_rsa_components(n, e)?;
    assert_sound(&pss, &rsa_key, jsonwebtoken::Algorithm::PS256, &claims)?;
    assert_sound(&sha512, &rsa_key, jsonwebtoken::Algorithm::RS512, &claims)?;
    let alg_number = es.sign(&es.header_with("alg", 256), &p)?;
    let no_alg = es.sign(&es.header_without("alg"), &p)?;

    #[rustfmt::skip]
    let cases = [
        ("ES256 key, header EdDSA",          re(es, "EdDSA")?, Err(AlgorithmMismatch)),
        ("ES256 key, header RS256",          re(es, "RS256")?, Err(AlgorithmMismatch)),
        ("ES256 key, header ES384",          re(es, "ES384")?, Err(AlgorithmMismatch)),
        ("ES256 key, header PS256",          re(es, "PS256")?, Err(AlgorithmMismatch)),
        ("EdDSA key, header ES256",          re(ed, "ES256")?, Err(AlgorithmMismatch)),
        ("EdDSA key, header RS256",          re(ed, "RS256")?, Err(AlgorithmMismatch)),
        ("RS256 key, header ES256",          re(rs, "ES256")?, Err(AlgorithmMismatch)),
        ("RS256 key, header EdDSA",          re(rs, "EdDSA")?, Err(AlgorithmMismatch)),
        ("RS256 key, valid PS256 signature", pss,              Err(AlgorithmMismatch)),
        ("RS256 key, valid RS512 signature", sha512,           Err(AlgorithmMismatch)),
        // `alg` values jsonwebtoken does not know make the header unparseable.
        ("header ES512",                     re(es, "ES512")?, Err(Malformed)),
        ("header es256",                     re(es, "es256")?, Err(Malformed)),
        ("header alg empty",                 re(es, "")?,      Err(Malformed)),
        ("header alg a number",              alg_number,       Err(Malformed)),
        ("header without alg",               no_alg,           Err(Malformed)),
    ];
    check("", cases);
    Ok(())
}

#[test]
fn the_key_is_found_by_kid_in_the_key_set_only() -> TestResult {
    let f = fixture();
    let claims = claims();
    let p = payload(&claims)?;
    let (es, ed, stranger) = (&f.es, &f.ed, &f.stranger);
    let kid = |kid: Value| es.sign(&es.header_with("kid", kid), &p);
    // A stranger's token carrying its own key, under `key`'s kid.
    let embedded = |key: &TestKey| stranger.sign(&key.header_with("jwk", stranger.jwk()), &p);
    let jku = stranger.sign(&es.header_with("jku", "https://evil.example/jwks.json"), &p)?;
    let impostor = stranger.sign(&es.header(), &p)?;
    let ed_as_es = ed.sign(&ed.header_with("kid", es.kid()), &p)?;
    let no_kid = es.sign(&es.header_without("kid"), &p)?;
    #[rustfmt::skip]
    let cases = [
        ("unknown key",                   stranger.issue(&claims)?, Err(UnknownKey)),
        ("unknown key under a known kid", impostor,                 Err(BadSignature)),
        ("EdDSA token, ES256 key's kid",  ed_as_es,                 Err(AlgorithmMismatch)),
        ("no kid",                        no_kid,                   Err(UnknownKey)),
        ("kid null",                      kid(Value::Null)?,        Err(UnknownKey)),
        ("kid empty",                     kid(json!(""))?,          Err(UnknownKey)),
        ("kid in upper case",             kid(json!("ES256"))?,     Err(UnknownKey)),
        ("kid a number",                  kid(json!(256))?,         Err(Malformed)),
        // Keys a token brings along are never trusted.
        ("jwk embedded, known kid",       embedded(es)?,            Err(BadSignature)),
        ("jwk embedded, its own kid",     embedded(stranger)?,      Err(UnknownKey)),
        ("jku, known kid",                jku,                      Err(BadSignature)),
    ];
    check("", cases);
    Ok(())
}

#[test]
fn verification_uses_only_the_keys_the_set_kept() -> TestResult {
    let f = fixture();
    let claims = claims();
    let expectations = Expectations::new(ISSUER, AUDIENCE);
    let (es_token, ed_token) = (f.es.issue(&claims)?, f.ed.issue(&claims)?);
    // An `enc` key is skipped, even though its private half signed the token.
    let enc = KeySet::from_jwks(&[with(f.es.jwk(), "use", "enc"), f.ed.jwk()])?;
    assert_eq!(format!("{enc:?}"), r#"KeySet { kids: ["eddsa"] }"#);
    #[rustfmt::skip]
    let cases = [
        ("kid of a skipped key", es_token.clone(), Err(UnknownKey)),
        ("kid of a kept key",    ed_token,         Ok(&claims)),
    ];
    check_with(&enc, &expectations, "", cases);
    let empty = [("empty key set", es_token.clone(), Err(UnknownKey))];
    check_with(&KeySet::default(), &expectations, "", empty);
    // A point that decodes but is not the key: the set loads (jsonwebtoken looks at the
    // point only when verifying) and verifies nothing.
    let junk = with(with(f.es.jwk(), "x", b64(&[1; 32])), "y", b64(&[2; 32]));
    let junk = KeySet::from_jwks(&[junk])?;
    let junk_cases = [("kid of a junk point", es_token, Err(BadSignature))];
    check_with(&junk, &expectations, "", junk_cases);
    Ok(())
}

#[test]
fn typ_must_be_at_jwt() -> TestResult {
    let f = fixture();
    let p = payload(&claims())?;
    let (es, stranger) = (&f.es, &f.stranger);
    let typed = |typ: Value| es.sign(&es.header_with("typ", typ), &p);
    let no_typ = es.sign(&es.header_without("typ"), &p)?;
    let unknown_jwt = stranger.sign(&stranger.header_with("typ", "JWT"), &p)?;
    #[rustfmt::skip]
    let cases = [
        ("typ JWT",                     typed(json!("JWT"))?,             Err(WrongType)),
        ("typ jwt",                     typed(json!("jwt"))?,             Err(WrongType)),
        ("typ application/jwt",         typed(json!("application/jwt"))?, Err(WrongType)),
        ("typ at+jwt with a space",     typed(json!("at+jwt "))?,         Err(WrongType)),
        ("typ empty",                   typed(json!(""))?,                Err(WrongType)),
        ("typ null",                    typed(Value::Null)?,              Err(WrongType)),
        ("no typ",                      no_typ,                           Err(WrongType)),
        ("typ a number",                typed(json!(9068))?,              Err(Malformed)),
        // `typ` is checked before the key is looked up.
        ("typ JWT from an unknown key", unknown_jwt,                      Err(WrongType)),
    ];
    check("", cases);
    Ok(())
}

#[test]
fn issuer_and_audience_must_be_exact() -> TestResult {
    let f = fixture();
    let claims = claims();
    let billing = "https://billing.example.com/";
    let iss = |iss: &str| AccessTokenClaims {
        iss: iss.to_owned(),
        ..claims.clone()
    };
    let aud = |aud: &str| AccessTokenClaims {
        aud: aud.to_owned(),
        ..claims.clone()
    };
    #[rustfmt::skip]
    check_claims(&[
        ("issuer of another tenant",   iss("https://evil.tollgate.example/"), Err(WrongIssuer)),
        ("issuer without its slash",   iss(ISSUER.trim_end_matches('/')),     Err(WrongIssuer)),
        ("issuer in upper case",       iss(&ISSUER.to_uppercase()),           Err(WrongIssuer)),
        ("issuer empty",               iss(""),                               Err(WrongIssuer)),
        ("audience of another API",    aud(billing),                          Err(WrongAudience)),
        ("audience without its slash", aud(AUDIENCE.trim_end_matches('/')),   Err(WrongAudience)),
        ("audience empty",             aud(""),                               Err(WrongAudience)),
    ])?;

    // Tollgate tokens carry exactly one audience and one issuer, as strings: a list is
    // malformed whatever it holds (the claims' shape is checked before their values).
    let es = &f.es;
    let p = payload(&claims)?;
    let listed = |member: &str, list: Value| es.sign(&es.header(), &with(p.clone(), member, list));
    #[rustfmt::skip]
    let cases = [
        ("audience list, ours",    listed("aud", json!([AUDIENCE]))?,          Err(Malformed)),
        ("audience list, another", listed("aud", json!([billing]))?,           Err(Malformed)),
        ("audience list, both",    listed("aud", json!([AUDIENCE, billing]))?, Err(Malformed)),
        ("issuer list, ours",      listed("iss", json!([ISSUER]))?,            Err(Malformed)),
    ];
    check("", cases);

    // One valid token, presented where it does not belong.
    let token = es.issue(&claims)?;
    let other_api = Expectations::new(ISSUER, billing);
    let other_tenant = Expectations::new("https://globex.tollgate.example/", AUDIENCE);
    #[rustfmt::skip]
    let cases = [
        (&other_api,    "presented to another API",    Err(WrongAudience)),
        (&other_tenant, "presented to another tenant", Err(WrongIssuer)),
    ];
    for (expectations, case, expected) in cases {
        check_with(&f.keys, expectations, "", [(case, token.clone(), expected)]);
    }
    Ok(())
}

#[test]
fn exp_and_nbf_are_checked_with_leeway() -> TestResult {
    let f = fixture();
    assert_eq!(Expectations::new(ISSUER, AUDIENCE).leeway_seconds, 30);
    let now = now();
    let ago = now - 3600;
    // Issued (and valid) from `nbf`, until `exp`.
    let at = |nbf: i64, exp: i64| AccessTokenClaims {
        iat: nbf,
        nbf,
        exp,
        ..claims()
    };
    let elsewhere = AccessTokenClaims {
        iss: "https://evil.example/".to_owned(),
        ..at(ago, ago)
    };
    #[rustfmt::skip]
    check_claims(&[
        ("expired an hour ago",          at(ago - 3600, ago),                   Err(Expired)),
        ("expired beyond the leeway",    at(ago, now - LEEWAY - MARGIN),        Err(Expired)),
        ("expired within the leeway",    at(ago, now - LEEWAY + MARGIN),        Ok(())),
        ("expired at the epoch",         at(0, 0),                              Err(Expired)),
        ("expiring before the epoch",    at(now, -1),                           Err(Malformed)),
        ("nbf within the leeway",        at(now + LEEWAY - MARGIN, now + 3600), Ok(())),
        ("nbf beyond the leeway",        at(now + LEEWAY + MARGIN, now + 3600), Err(NotYetValid)),
        ("nbf in an hour",               at(now + 3600, now + 7200),            Err(NotYetValid)),
        // Time is checked before issuer and audience.
        ("expired, from another issuer", elsewhere,                             Err(Expired)),
    ])?;

    // The leeway is the resource server's to choose.
    let strict = Expectations {
        leeway_seconds: 0,
        ..Expectations::new(ISSUER, AUDIENCE)
    };
    let lenient = Expectations {
        leeway_seconds: 300,
        ..Expectations::new(ISSUER, AUDIENCE)
    };
    let (valid, recently_expired) = (at(now - MARGIN, now + 3600), at(ago, now - 120));
    let soon_valid = at(now + 120, now + 3600);
    let issue = |claims: &AccessTokenClaims| f.es.issue(claims);
    #[rustfmt::skip]
    let cases = [
        ("valid",               issue(&valid)?,                        Ok(&valid)),
        ("expired seconds ago", issue(&at(ago, now - MARGIN))?,        Err(Expired)),
        ("valid in seconds",    issue(&at(now + MARGIN, now + 3600))?, Err(NotYetValid)),
    ];
    check_with(&f.keys, &strict, "no leeway, ", cases);
    #[rustfmt::skip]
    let cases = [
        ("expired 2 min ago", issue(&recently_expired)?, Ok(&recently_expired)),
        ("valid in 2 min",    issue(&soon_valid)?,       Ok(&soon_valid)),
    ];
    check_with(&f.keys, &lenient, "5 min leeway, ", cases);
    Ok(())
}

#[test]
fn tampered_tokens_are_refused() -> TestResult {
    let f = fixture();
    let claims = claims();
    for key in f.all() {
        let token = key.issue(&claims)?;
        let [header, payload, signature] = parts(&token)?;
        let signed = |signature: &str| format!("{header}.{payload}.{signature}");
        let forged = |claims: &AccessTokenClaims| -> Fallible<String> {
            Ok(format!(
                "{header}.{}.{signature}",
                b64(&serde_json::to_vec(claims)?)
            ))
        };
        let (mut widened, mut root, mut longer) = (claims.clone(), claims.clone(), claims.clone());
        widened.scope.push_str(" archive:admin");
        root.sub = "root@client".to_owned();
        longer.exp += 86_400;
        let retyped = b64(&serde_json::to_vec(
            &key.header_with("typ", "application/at+jwt"),
        )?);
        let other = key.issue(&AccessTokenClaims {
            jti: "other".to_owned(),
            ..claims.clone()
        })?;
        let [_, _, other] = parts(&other)?;
        let mut flipped = URL_SAFE_NO_PAD.decode(signature)?;
        *flipped.first_mut().ok_or("empty signature")? ^= 1;
        let rewritten = format!("{retyped}.{payload}.{signature}");
        let respelled = signed(&flip_last_bit(signature)?);
        let cut = |by: usize| signed(signature.get(..signature.len() - by).unwrap_or_default());
        #[rustfmt::skip]
        let cases = [
            ("scope widened",                 forged(&widened)?,      Err(BadSignature)),
            ("subject changed",               forged(&root)?,         Err(BadSignature)),
            ("expiry extended",               forged(&longer)?,       Err(BadSignature)),
            ("header rewritten",              rewritten,              Err(BadSignature)),
            ("signature of another token",    signed(other),          Err(BadSignature)),
            ("signature bit flipped",         signed(&b64(&flipped)), Err(BadSignature)),
            // Cut by two characters, the signature still decodes, one byte short; cut by one,
            // it is not base64url at all.
            ("signature cut by 2 characters", cut(2),                 Err(BadSignature)),
            ("signature cut by 1 character",  cut(1),                 Err(Malformed)),
            ("signature empty",               signed(""),             Err(BadSignature)),
            ("signature lengthened",          format!("{token}AAAA"), Err(BadSignature)),
            // The same signature bytes in non-canonical base64url: a token has one spelling.
            ("signature not canonical",       respelled,              Err(Malformed)),
        ];
        check(&format!("{}: ", key.alg), cases);
    }
    Ok(())
}

#[test]
fn garbage_is_malformed() -> TestResult {
    let f = fixture();
    let token = f.es.issue(&claims())?;
    let [header, payload, signature] = parts(&token)?;
    let rest = format!("{payload}.{signature}");
    // Payloads that are not claims at all, under genuine signatures.
    let es = &f.es;
    let es_header = serde_json::to_vec(&es.header())?;
    let signed = |payload: &[u8]| jws_bytes(&es_header, payload, |input| es.signature(input));
    #[rustfmt::skip]
    let cases = [
        ("empty",                                   String::new()),
        ("one dot",                                 ".".to_owned()),
        ("two dots",                                "..".to_owned()),
        ("two parts",                               "a.b".to_owned()),
        ("three parts",                             "a.b.c".to_owned()),
        ("four parts",                              "a.b.c.d".to_owned()),
        ("words",                                   "not a token".to_owned()),
        ("not base64url",                           "!!!.@@@.###".to_owned()),
        ("standard base64 alphabet",                "eyJ+/.eyJ+/.ab+/".to_owned()),
        ("a valid token with a fourth part",        format!("{token}.{signature}")),
        ("a valid token after Bearer",              format!("Bearer {token}")),
        ("a valid token with a newline",            format!("{token}\n")),
        ("a valid token's header and payload only", format!("{header}.{payload}")),
        ("header padded",                           format!("{header}=.{rest}")),
        ("header not JSON",                         format!("{}.{rest}", b64(b"{alg: ES256}"))),
        ("header a JSON array",                     format!("{}.{rest}", b64(b"[]"))),
        ("header JSON null",                        format!("{}.{rest}", b64(b"null"))),
        ("payload not JSON",                        signed(b"not json")?),
        ("payload empty",                           signed(b"")?),
        ("payload a JSON array",                    signed(b"[]")?),
        ("payload JSON null",                       signed(b"null")?),
        ("payload a JSON string",                   signed(br#""claims""#)?),
    ];
    check("", cases.map(|(case, token)| (case, token, Err(Malformed))));
    Ok(())
}

#[test]
fn payloads_lacking_claims_are_malformed() -> TestResult {
    let f = fixture();
    let claims = claims();
    let p = payload(&claims)?;
    let object = p.as_object().ok_or("claims are not an object")?;
    let mut names = CLAIM_NAMES.to_vec();
    names.sort_unstable();
    assert!(
        object.keys().eq(names),
        "AccessTokenClaims changed: update CLAIM_NAMES"
    );

    let es = &f.es;
    let signed = |payload: Value| es.sign(&es.header(), &payload);
    let changed = |name: &str, value: Value| signed(with(p.clone(), name, value));
    for name in CLAIM_NAMES {
        #[rustfmt::skip]
        let cases = [
            ("missing", signed(without(p.clone(), name))?, Err(Malformed)),
            ("null",    changed(name, Value::Null)?,       Err(Malformed)),
        ];
        check(&format!("{name} "), cases);
    }
    #[rustfmt::skip]
    let cases = [
        ("no claims at all", signed(json!({}))?,                             Err(Malformed)),
        ("exp a string",     changed("exp", json!(claims.exp.to_string()))?, Err(Malformed)),
        ("exp a fraction",   changed("exp", json!(4_000_000_000.5_f64))?,    Err(Malformed)),
        ("exp beyond i64",   changed("exp", json!(u64::MAX))?,               Err(Malformed)),
        ("nbf a string",     changed("nbf", json!(claims.nbf.to_string()))?, Err(Malformed)),
        ("scp a string",     changed("scp", json!("archive:read"))?,         Err(Malformed)),
        ("sub a number",     changed("sub", json!(42))?,                     Err(Malformed)),
    ];
    check("", cases);
    Ok(())
}

#[test]
fn key_sets_are_parsed_strictly() {
    let f = fixture();
    let (es, ed, rs) = (|| f.es.jwk(), || f.ed.jwk(), || f.rs.jwk());
    let enc = || with(es(), "use", "enc");
    let oct =
        || json!({ "kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "mac", "use": "sig" });
    let one = |key: Value| document([key]);
    #[rustfmt::skip]
    check_key_sets(&[
        ("the issuer's JWKS",   f.jwks.clone(),             Ok(3)),
        ("no keys",             r#"{"keys":[]}"#.into(),    Ok(0)),
        ("use sig",             one(es()),                  Ok(1)),
        ("no use",              one(without(es(), "use")),  Ok(1)),
        ("use enc is skipped",  document([enc(), ed()]),    Ok(1)),
        ("use enc, no kid",     one(without(enc(), "kid")), Ok(0)),
        ("oct key without alg", one(without(oct(), "alg")), lacks("alg")),
        ("without kid",         one(without(es(), "kid")),  lacks("kid")),
        ("kid a number",        one(with(es(), "kid", 7)),  lacks("kid")),
        ("without alg",         one(without(es(), "alg")),  lacks("alg")),
        ("without kty",         one(without(es(), "kty")),  lacks("kty")),
        ("EC without crv",      one(without(es(), "crv")),  lacks("crv")),
        ("EC without y",        one(without(es(), "y")),    lacks("y")),
        ("OKP without x",       one(without(ed(), "x")),    lacks("x")),
        ("RSA without e",       one(without(rs(), "e")),    lacks("e")),
        ("x not base64url",     one(with(es(), "x", "!")),  invalid(r#"key "es256" is invalid: "#)),
        ("not JSON",            "keys: []".into(),          invalid("not JSON: ")),
        ("empty document",      String::new(),              invalid("not JSON: ")),
        ("no keys member",      "{}".into(),                invalid(r#"no "keys" array"#)),
        ("keys not an array",   r#"{"keys":{}}"#.into(),    invalid(r#"no "keys" array"#)),
        ("a bare array",        "[]".into(),                invalid(r#"no "keys" array"#)),
    ]);
    // Each refused as "unsupported key {kid}: alg {alg}, kty {kty}".
    #[rustfmt::skip]
    let unsupported = [
        ("HS256 oct key",        one(oct()),                       ("mac", "HS256", "oct")),
        ("oct after a good key", document([es(), oct()]),          ("mac", "HS256", "oct")),
        ("alg none",             one(with(es(), "alg", "none")),   ("es256", "none", "EC")),
        ("ES256 on P-384",       one(with(es(), "crv", "P-384")),  ("es256", "ES256", "EC")),
        ("ES256 on an OKP key",  one(with(ed(), "alg", "ES256")),  ("eddsa", "ES256", "OKP")),
        ("EdDSA on X25519",      one(with(ed(), "crv", "X25519")), ("eddsa", "EdDSA", "OKP")),
        ("RS512 key",            one(with(rs(), "alg", "RS512")),  ("rs256", "RS512", "RSA")),
        ("PS256 key",            one(with(rs(), "alg", "PS256")),  ("rs256", "PS256", "RSA")),
    ];
    check_key_sets(&unsupported.map(|(case, jwks, (kid, alg, kty))| {
        let message = format!("unsupported key {kid:?}: alg {alg:?}, kty {kty:?}");
        (case, jwks, Err(message))
    }));
}

/// Properties over any input, on the same keys.
mod proptests;
