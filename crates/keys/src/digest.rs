//! Plain SHA-256, for callers that need a collision-resistant digest of public data (the
//! audit trail's hash chain). Nothing secret goes in and the output is no authenticator:
//! keyed hashing of client secrets is [`crate::SecretHasher`]'s job.

use ring::digest;

/// Length of a SHA-256 digest, in bytes.
pub const SHA256_LEN: usize = 32;

/// The SHA-256 digest of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; SHA256_LEN] {
    let digest = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; SHA256_LEN];
    // ring's SHA-256 output is always 32 bytes; copying through the slice keeps this
    // panic-free even so.
    for (slot, byte) in out.iter_mut().zip(digest.as_ref()) {
        *slot = *byte;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // FIPS 180-2 test vectors.
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
