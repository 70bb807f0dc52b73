//! Tollgate's cryptography, and the only crate that touches it: the [`MasterKey`] that seals
//! stored private keys and derives the client-secret pepper, the [`SecretHasher`] for client
//! secrets, token [`SigningKey`]s with their public JWKs and the JWKS document, the random
//! identifiers (client ids, client secrets, database ids, token ids), plain [`sha256`]
//! for the audit trail's hash chain, and the constant-time check of a [`SharedSecret`]
//! (the edge gateway's).
//!
//! ring does all cryptography at run time; the `rsa` crate only generates RSA private keys.
//! Keys are parsed once into ready-to-use form, so the token path does no re-parsing.

mod digest;
mod error;
mod master;
mod random;
mod secret;
mod shared;
mod signing;

pub use digest::{SHA256_LEN, sha256};
pub use error::KeyError;
pub use master::MasterKey;
pub use random::{
    CLIENT_ID_LEN, CLIENT_SECRET_PREFIX, generate_client_id, generate_client_secret, generate_id,
    generate_jti,
};
pub use secret::SecretHasher;
pub use shared::SharedSecret;
pub use signing::{SigningKey, jwks_json};
