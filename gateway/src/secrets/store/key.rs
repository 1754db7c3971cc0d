//! The master key and every key derived from it.
//!
//! One random 32-byte master key opens a store. HKDF-SHA256 derives, with the store's random
//! salt, a key per tenant (so a record sealed for one tenant opens with no other tenant's key),
//! the key that authenticates the file's table of contents, and a published key check (tells a
//! wrong master key from a damaged file); and, without the salt, the fingerprint key (so the
//! same value has the same fingerprint in every store opened with the same master key, and
//! `portcullis secrets list` shows what `/api/v1/secrets` shows).
//!
//! No key ever reaches `Debug`, a log or an error: errors say which file or variable was wrong
//! and how, never what it held. Key bytes are zeroed when dropped.

use std::path::{Path, PathBuf};

use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secrets::{Environment, FingerprintKey};

/// The environment variable that holds the master key when no key file is given.
pub(crate) const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";

/// Bytes of a master key (and of every derived key).
pub(crate) const KEY_LEN: usize = 32;

/// Bytes of a store's salt.
pub(crate) const SALT_LEN: usize = 32;

const INFO_KEY_CHECK: &[u8] = b"portcullis-store/v1/key-check";
const INFO_TOC_MAC: &[u8] = b"portcullis-store/v1/toc-mac";
const INFO_TENANT: &[u8] = b"portcullis-store/v1/tenant/";
const INFO_FINGERPRINT: &[u8] = b"portcullis-store/v1/fingerprint";

/// The master key of a store: 32 random bytes, zeroed on drop, never printed.
#[derive(Clone)]
pub(crate) struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

/// Why no usable master key was found. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MasterKeyError {
    /// Neither a key file nor the environment variable was given.
    #[error("no master key: set secrets.master_key_file, --master-key-file or ${MASTER_KEY_ENV}")]
    Absent,
    /// The key file could not be read.
    #[error("master key file '{}': cannot read: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The IO error.
        reason: String,
    },
    /// The key is not 32 bytes in base64 or hex.
    #[error("{origin}: not a master key (expected 32 bytes as base64, 44 characters, or as 64 hex digits; `portcullis secrets keygen` makes one)")]
    Malformed {
        /// `master key file '…'` or `$PORTCULLIS_MASTER_KEY`.
        origin: String,
    },
}

/// The keys a store's salt and a master key derive.
pub(crate) struct StoreKeys {
    /// HKDF pseudo-random key over (salt, master key): expanded into the keys below.
    prk: Hkdf<Sha256>,
    /// Fingerprint key (does not depend on the salt).
    fingerprint: FingerprintKey,
}

// === impl MasterKey ===

impl MasterKey {
    /// A fresh key from a cryptographically secure generator (rand's `ThreadRng`, seeded by
    /// the operating system).
    pub(crate) fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::fill(&mut key[..]);
        Self(key)
    }

    /// Parses a key written as base64 (padded or not) or as 64 hex digits, surrounding
    /// whitespace ignored. `origin` names where it came from, for the error.
    pub(crate) fn parse(
        text: &str,
        origin: impl FnOnce() -> String,
    ) -> Result<Self, MasterKeyError> {
        let text = text.trim();
        let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok().map(Zeroizing::new)
        } else {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text.trim_end_matches('='))
                .ok()
                .map(Zeroizing::new)
        };
        match decoded {
            Some(bytes) if bytes.len() == KEY_LEN => {
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                key.copy_from_slice(&bytes);
                Ok(Self(key))
            }
            _ => Err(MasterKeyError::Malformed { origin: origin() }),
        }
    }

    /// Reads the key from `file` if given, else from `$PORTCULLIS_MASTER_KEY`.
    pub(crate) fn load(file: Option<&Path>, env: &dyn Environment) -> Result<Self, MasterKeyError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|e| MasterKeyError::Unreadable {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            return Self::parse(&text, || format!("master key file '{}'", path.display()));
        }
        match env.var(MASTER_KEY_ENV).map(Zeroizing::new) {
            Some(text) => Self::parse(&text, || format!("${MASTER_KEY_ENV}")),
            None => Err(MasterKeyError::Absent),
        }
    }

    /// The key in base64 (what `keygen` prints).
    pub(crate) fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&self.0[..]))
    }

    /// The key in hex (`keygen --hex`).
    pub(crate) fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }

    /// The keys for a store with this salt.
    pub(crate) fn derive(&self, salt: &[u8; SALT_LEN]) -> StoreKeys {
        let prk = Hkdf::<Sha256>::new(Some(salt), &self.0[..]);
        let unsalted = Hkdf::<Sha256>::new(None, &self.0[..]);
        let mut fingerprint = Zeroizing::new([0u8; KEY_LEN]);
        expand(&unsalted, &[INFO_FINGERPRINT], &mut fingerprint);
        StoreKeys {
            prk,
            fingerprint: FingerprintKey::from_bytes(fingerprint),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

// === impl StoreKeys ===

impl StoreKeys {
    /// The published key check: tells "wrong master key" from "damaged file".
    pub(crate) fn key_check(&self) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        expand(&self.prk, &[INFO_KEY_CHECK], &mut out);
        out
    }

    /// The key of the table-of-contents MAC.
    pub(crate) fn toc_mac_key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        expand(&self.prk, &[INFO_TOC_MAC], &mut out);
        out
    }

    /// The AEAD key of a tenant's records.
    pub(crate) fn tenant_key(&self, tenant: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        expand(&self.prk, &[INFO_TENANT, tenant.as_bytes()], &mut out);
        out
    }

    /// The fingerprint key.
    pub(crate) fn fingerprint(&self) -> &FingerprintKey {
        &self.fingerprint
    }
}

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKeys(..)")
    }
}

/// HKDF-Expand into `out` (32 bytes).
fn expand(hkdf: &Hkdf<Sha256>, info: &[&[u8]], out: &mut [u8; KEY_LEN]) {
    // Tenant ids cannot contain '/', so `tenant/<id>` infos never collide with the fixed ones.
    hkdf.expand_multi_info(info, out)
        .expect("32 bytes is within HKDF-SHA256's output limit of 8160");
}
