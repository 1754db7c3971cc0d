//! Secret fingerprints: a keyed hash prefix that tells two versions of a secret apart (rotation
//! shows in the admin API and the audit log) without revealing either, nor letting anyone who
//! sees a fingerprint test guesses offline: the key is random per process and never leaves it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The fingerprint key: random per process, or derived from the secret store's master key for
/// the store's values (so `portcullis secrets list` and the admin API agree). Zeroed on drop.
#[derive(Clone)]
pub(crate) struct FingerprintKey(Zeroizing<[u8; 32]>);

// === impl FingerprintKey ===

impl FingerprintKey {
    /// A fresh random key.
    pub(crate) fn random() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self(key)
    }

    /// A fixed key, for tests and `portcullis check` (which shows no fingerprint).
    pub(crate) fn fixed(byte: u8) -> Self {
        Self(Zeroizing::new([byte; 32]))
    }

    /// A key derived elsewhere (the secret store's).
    pub(crate) fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        Self(key)
    }

    /// The first 6 bytes of HMAC-SHA256(key, value), in hex.
    pub(crate) fn fingerprint(&self, value: &[u8]) -> String {
        // HMAC takes keys of any length; a 32-byte key cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0[..]) else {
            return String::new();
        };
        mac.update(value);
        hex::encode(&mac.finalize().into_bytes()[..6])
    }
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_versions_apart_and_depend_on_the_key() {
        let one = FingerprintKey::fixed(1);
        let a = one.fingerprint(b"one");
        assert_ne!(a, one.fingerprint(b"two"));
        assert_ne!(a, FingerprintKey::fixed(2).fingerprint(b"one"));
        assert_eq!(a, one.fingerprint(b"one"));
        assert_eq!(a.len(), 12);
        // HMAC, not sha256(key ‖ value): the two differ.
        let mut naive = sha2::Sha256::default();
        sha2::Digest::update(&mut naive, [1u8; 32]);
        sha2::Digest::update(&mut naive, b"one");
        assert_ne!(a, hex::encode(&sha2::Digest::finalize(naive)[..6]));
        assert_eq!(format!("{one:?}"), "FingerprintKey(..)");
    }
}
