//! The encrypted secret store: one file of tenants' secrets, safe at rest, managed with
//! `portcullis secrets` and read by the gateway at every runtime build.
//!
//! Each value is sealed with XChaCha20-Poly1305 under its tenant's key (HKDF-SHA256 of the
//! master key and the store's salt), with the tenant, the name and all the record's metadata
//! (created, rotated, expiry, note, fingerprint history) as associated data. A file-level MAC
//! covers the header and the table of contents. So:
//! - a wrong master key fails the whole store, and says so (key check);
//! - a record whose value or metadata was altered, or that was moved to another tenant or name,
//!   fails on its own: it is `undecryptable`, the others stay usable;
//! - a header change, or a record added, removed, renamed or rolled back to an older copy,
//!   fails the whole store.
//!
//! Not covered: replacing the whole file with an older version sealed under the same key (keep
//! the store where only the operators and the gateway can write). The layout is in [`format`],
//! the keys in [`key`], locking and atomic replacement in [`io`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod format;
mod io;
mod key;

#[cfg(test)]
mod tests;

pub(crate) use self::format::Timestamp;
use self::format::{FileV1, HistoryV1, Probe, RecordV1, B64, VERSION};
pub(crate) use self::key::{MasterKey, MasterKeyError};
use self::key::{StoreKeys, SALT_LEN};

/// Bytes of an XChaCha20-Poly1305 nonce.
const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
const TAG_LEN: usize = 16;
/// Fingerprints of earlier values kept per record.
pub(crate) const HISTORY_LIMIT: usize = 20;
/// Characters of a note.
const NOTE_LIMIT: usize = 500;

/// A store file, opened with its master key: header and table of contents verified. Records
/// are verified one by one when opened ([`StoreFile::open_value`]).
#[derive(Debug)]
pub(crate) struct StoreFile {
    path: PathBuf,
    keys: StoreKeys,
    salt: [u8; SALT_LEN],
    key_check: Vec<u8>,
    records: BTreeMap<(String, String), RecordV1>,
}

/// A record's value, opened, with its authenticated metadata.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The value.
    pub(crate) value: SecretString,
    /// The keyed fingerprint of the value.
    pub(crate) fingerprint: String,
    /// The declared expiry.
    pub(crate) expires: Option<Timestamp>,
}

/// One record as `portcullis secrets list` shows it: metadata only, and only when it is
/// authentic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Listed {
    /// Owning tenant.
    pub(crate) tenant: String,
    /// Secret name.
    pub(crate) name: String,
    /// `ok`, or `undecryptable` (then every field below is `None`: it cannot be trusted).
    pub(crate) status: &'static str,
    /// Keyed fingerprint of the current value.
    pub(crate) fingerprint: Option<String>,
    /// RFC 3339.
    pub(crate) created: Option<String>,
    /// RFC 3339.
    pub(crate) rotated: Option<String>,
    /// RFC 3339.
    pub(crate) expires: Option<String>,
    /// Operator's note.
    pub(crate) note: Option<String>,
    /// Earlier values, oldest first.
    pub(crate) history: Vec<ListedHistory>,
}

/// An earlier value in a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ListedHistory {
    /// Its fingerprint.
    pub(crate) fingerprint: String,
    /// When it was replaced (RFC 3339).
    pub(crate) replaced: String,
}

/// What a rotation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// Fingerprint of the value replaced.
    pub(crate) previous: String,
    /// Fingerprint of the new value.
    pub(crate) current: String,
    /// The replaced value had an expiry and the new one has none.
    pub(crate) expiry_cleared: bool,
}

/// Why a store could not be opened or changed. Every message names the file; none carries a
/// value or a key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The file could not be read.
    #[error("secret store '{}': cannot read: {source}", path.display())]
    Read {
        /// The store.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a store file, or a damaged one.
    #[error("secret store '{}': not a valid portcullis secret store: {reason}", path.display())]
    Malformed {
        /// The store.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A format version this build does not read.
    #[error("secret store '{}': format version {found} is not supported (this build reads version {VERSION})", path.display())]
    Version {
        /// The store.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// The master key does not match the store's key check.
    #[error("secret store '{}': the master key does not open this store (wrong key, or the store's salt or key check was altered)", path.display())]
    WrongKey {
        /// The store.
        path: PathBuf,
    },
    /// The table of contents does not match its MAC.
    #[error("secret store '{}': integrity check failed: the file was altered (its header changed, or a record was added, removed, renamed or rolled back)", path.display())]
    Tampered {
        /// The store.
        path: PathBuf,
    },
    /// No usable master key.
    #[error("secret store '{}': {source}", path.display())]
    MasterKey {
        /// The store.
        path: PathBuf,
        /// Why.
        source: MasterKeyError,
    },
    /// The writers' lock could not be taken.
    #[error("secret store '{}': cannot lock '{}': {reason}", path.display(), lock.display())]
    Lock {
        /// The store.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Why.
        reason: String,
    },
    /// The new content could not be written.
    #[error("secret store '{}': cannot write: {reason}", path.display())]
    Write {
        /// The store.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An edit that does not apply (unknown record, existing record, bad name …).
    #[error("secret store '{}': {reason}", path.display())]
    Edit {
        /// The store.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why one record could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    /// Authentication failed: the value or metadata was altered, or moved from another record.
    #[error("cannot be decrypted: the record was altered, or sealed for another tenant or name")]
    Undecryptable,
    /// It opened, but the value is not UTF-8 (no writer of this build puts such a value in).
    #[error("the value is not UTF-8")]
    NotUtf8,
}

// === impl StoreFile ===

impl StoreFile {
    /// Reads and verifies the store at `path`.
    pub(crate) fn open(path: &Path, key: &MasterKey) -> Result<Self, StoreError> {
        let bytes = std::fs::read(path).map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes, key)
    }

    /// A new, empty store (with a fresh salt) that [`StoreFile::save`] will create at `path`.
    pub(crate) fn create(path: &Path, key: &MasterKey) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        let keys = key.derive(&salt);
        let key_check = keys.key_check().to_vec();
        Self {
            path: path.to_path_buf(),
            keys,
            salt,
            key_check,
            records: BTreeMap::new(),
        }
    }

    /// Opens the store at `path` under the writers' lock (creating it when `create` is set and
    /// it does not exist), applies `edit`, and writes the result atomically. Nothing is written
    /// when `edit` fails.
    pub(crate) fn update<T>(
        path: &Path,
        key: &MasterKey,
        create: bool,
        edit: impl FnOnce(&mut StoreFile) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = io::lock(path)?;
        let mut store = match Self::open(path, key) {
            Ok(store) => store,
            Err(StoreError::Read { source, .. })
                if create && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Self::create(path, key)
            }
            Err(e) => return Err(e),
        };
        let out = edit(&mut store)?;
        store.save()?;
        Ok(out)
    }

    fn from_bytes(path: &Path, bytes: &[u8], key: &MasterKey) -> Result<Self, StoreError> {
        let malformed = |reason: String| StoreError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if probe.portcullis_secret_store != VERSION {
            return Err(StoreError::Version {
                path: path.to_path_buf(),
                found: probe.portcullis_secret_store,
            });
        }
        let file: FileV1 = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let salt: [u8; SALT_LEN] = file
            .salt
            .0
            .as_slice()
            .try_into()
            .map_err(|_| malformed(format!("salt: expected {SALT_LEN} bytes")))?;
        for (field, b) in [("key_check", &file.key_check), ("toc_mac", &file.toc_mac)] {
            if b.0.len() != 32 {
                return Err(malformed(format!("{field}: expected 32 bytes")));
            }
        }
        let keys = key.derive(&salt);
        if !bool::from(keys.key_check().ct_eq(&file.key_check.0[..])) {
            return Err(StoreError::WrongKey {
                path: path.to_path_buf(),
            });
        }
        if toc_mac(&keys, &file).verify_slice(&file.toc_mac.0).is_err() {
            return Err(StoreError::Tampered {
                path: path.to_path_buf(),
            });
        }
        let mut records = BTreeMap::new();
        for record in file.records {
            if record.nonce.0.len() != NONCE_LEN || record.sealed.0.len() < TAG_LEN {
                return Err(malformed(format!(
                    "record {}/{}: nonce or sealed value of the wrong length",
                    record.tenant, record.name
                )));
            }
            let pair = (record.tenant.clone(), record.name.clone());
            if records.insert(pair, record).is_some() {
                return Err(malformed("a record is listed twice".into()));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            keys,
            salt,
            key_check: file.key_check.0,
            records,
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store has a record for `tenant`/`name` (openable or not).
    pub(crate) fn contains(&self, tenant: &str, name: &str) -> bool {
        self.records
            .contains_key(&(tenant.to_owned(), name.to_owned()))
    }

    /// Opens one record: `None` when there is none.
    pub(crate) fn open_value(
        &self,
        tenant: &str,
        name: &str,
    ) -> Option<Result<Opened, RecordError>> {
        let record = self.records.get(&(tenant.to_owned(), name.to_owned()))?;
        Some(self.open_record(record))
    }

    fn open_record(&self, record: &RecordV1) -> Result<Opened, RecordError> {
        let plain = self.decrypt(record)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|e| {
            // Zero the bytes the error hands back.
            drop(Zeroizing::new(e.into_bytes()));
            RecordError::NotUtf8
        })?;
        let fingerprint = self.keys.fingerprint().fingerprint(text.as_bytes());
        Ok(Opened {
            value: SecretString::from(text),
            fingerprint,
            expires: record.expires,
        })
    }

    fn decrypt(&self, record: &RecordV1) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        let key = self.keys.tenant_key(&record.tenant);
        let cipher = XChaCha20Poly1305::new(key.as_slice().into());
        if record.nonce.0.len() != NONCE_LEN {
            return Err(RecordError::Undecryptable);
        }
        let aad = record.associated_data();
        cipher
            .decrypt(
                XNonce::from_slice(&record.nonce.0),
                Payload {
                    msg: &record.sealed.0,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| RecordError::Undecryptable)
    }

    /// Every record's metadata, verified: an undecryptable record shows only its name.
    pub(crate) fn list(&self) -> Vec<Listed> {
        self.records
            .values()
            .map(|r| match self.decrypt(r) {
                Ok(_) => Listed {
                    tenant: r.tenant.clone(),
                    name: r.name.clone(),
                    status: "ok",
                    fingerprint: Some(r.fingerprint.clone()),
                    created: Some(r.created.to_rfc3339()),
                    rotated: r.rotated.map(Timestamp::to_rfc3339),
                    expires: r.expires.map(Timestamp::to_rfc3339),
                    note: r.note.clone(),
                    history: r
                        .history
                        .iter()
                        .map(|h| ListedHistory {
                            fingerprint: h.fingerprint.clone(),
                            replaced: h.replaced.to_rfc3339(),
                        })
                        .collect(),
                },
                Err(_) => Listed {
                    tenant: r.tenant.clone(),
                    name: r.name.clone(),
                    status: "undecryptable",
                    fingerprint: None,
                    created: None,
                    rotated: None,
                    expires: None,
                    note: None,
                    history: Vec::new(),
                },
            })
            .collect()
    }

    /// The keyed fingerprint of `value` under this store's master key.
    pub(crate) fn fingerprint(&self, value: &str) -> String {
        self.keys.fingerprint().fingerprint(value.as_bytes())
    }

    /// Adds a record; fails if `tenant`/`name` has one already.
    pub(crate) fn insert(
        &mut self,
        tenant: &str,
        name: &str,
        value: &str,
        expires: Option<Timestamp>,
        note: Option<String>,
    ) -> Result<(), StoreError> {
        self.check_names(tenant, name)?;
        self.check_note(note.as_deref())?;
        if value.is_empty() {
            return Err(self.edit_error(format!("{tenant}/{name}: the value is empty")));
        }
        if self.contains(tenant, name) {
            return Err(self.edit_error(format!(
                "{tenant}/{name} exists already; replace its value with `portcullis secrets rotate`"
            )));
        }
        let record = RecordV1 {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            created: Timestamp::now(),
            rotated: None,
            expires,
            note,
            fingerprint: self.fingerprint(value),
            history: Vec::new(),
            nonce: B64(Vec::new()),
            sealed: B64(Vec::new()),
        };
        let record = self.seal(record, value);
        self.records
            .insert((tenant.to_owned(), name.to_owned()), record);
        Ok(())
    }

    /// Replaces the value of an existing record, keeping the previous fingerprint in its
    /// history. The expiry belongs to the value: it becomes `expires` (none if `None`). The note
    /// is kept unless `note` is given.
    pub(crate) fn rotate(
        &mut self,
        tenant: &str,
        name: &str,
        value: &str,
        expires: Option<Timestamp>,
        note: Option<String>,
    ) -> Result<Rotation, StoreError> {
        self.check_note(note.as_deref())?;
        if value.is_empty() {
            return Err(self.edit_error(format!("{tenant}/{name}: the value is empty")));
        }
        let Some(old) = self.records.get(&(tenant.to_owned(), name.to_owned())) else {
            return Err(self.edit_error(format!(
                "{tenant}/{name} does not exist; add it with `portcullis secrets set`"
            )));
        };
        if self.decrypt(old).is_err() {
            return Err(self.edit_error(format!(
                "{tenant}/{name} {}; its metadata cannot be trusted, so it is not carried over: `portcullis secrets delete` it and `set` it again",
                RecordError::Undecryptable
            )));
        }
        let now = Timestamp::now();
        let mut history = old.history.clone();
        history.push(HistoryV1 {
            fingerprint: old.fingerprint.clone(),
            replaced: now,
        });
        if history.len() > HISTORY_LIMIT {
            history.drain(..history.len() - HISTORY_LIMIT);
        }
        let previous = old.fingerprint.clone();
        let expiry_cleared = old.expires.is_some() && expires.is_none();
        let record = RecordV1 {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            created: old.created,
            rotated: Some(now),
            expires,
            note: note.or_else(|| old.note.clone()),
            fingerprint: self.fingerprint(value),
            history,
            nonce: B64(Vec::new()),
            sealed: B64(Vec::new()),
        };
        let record = self.seal(record, value);
        let current = record.fingerprint.clone();
        self.records
            .insert((tenant.to_owned(), name.to_owned()), record);
        Ok(Rotation {
            previous,
            current,
            expiry_cleared,
        })
    }

    /// Removes a record (openable or not).
    pub(crate) fn remove(&mut self, tenant: &str, name: &str) -> Result<(), StoreError> {
        match self.records.remove(&(tenant.to_owned(), name.to_owned())) {
            Some(_) => Ok(()),
            None => Err(self.edit_error(format!("{tenant}/{name} does not exist"))),
        }
    }

    /// Writes the store to its path atomically. Callers hold the writers' lock
    /// ([`StoreFile::update`] does).
    fn save(&self) -> Result<(), StoreError> {
        let mut file = FileV1 {
            portcullis_secret_store: VERSION,
            salt: B64(self.salt.to_vec()),
            key_check: B64(self.key_check.clone()),
            records: self.records.values().cloned().collect(),
            toc_mac: B64(Vec::new()),
        };
        file.toc_mac = B64(toc_mac(&self.keys, &file).finalize().into_bytes().to_vec());
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        io::write_atomic(&self.path, &bytes)
    }

    /// Seals `value` into `record`, whose metadata is final.
    fn seal(&self, mut record: RecordV1, value: &str) -> RecordV1 {
        let key = self.keys.tenant_key(&record.tenant);
        let cipher = XChaCha20Poly1305::new(key.as_slice().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = record.associated_data();
        // Encryption fails only for messages beyond 256 GiB.
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("a secret value is far below XChaCha20-Poly1305's message limit");
        record.nonce = B64(nonce.to_vec());
        record.sealed = B64(sealed);
        record
    }

    fn check_names(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        if !is_tenant_id(tenant) {
            return Err(self.edit_error(format!(
                "tenant '{tenant}': must be 1 to 64 lowercase letters, digits, '-' and '_', starting with a letter or digit (as tenants.id)"
            )));
        }
        if !is_secret_name(name) {
            return Err(self.edit_error(format!(
                "secret name '{name}': must be 1 to 128 letters, digits, '_', '-' and '.', not starting with '.' (as in ${{secret:NAME}})"
            )));
        }
        Ok(())
    }

    fn check_note(&self, note: Option<&str>) -> Result<(), StoreError> {
        match note {
            Some(n) if n.chars().count() > NOTE_LIMIT || n.chars().any(char::is_control) => {
                Err(self.edit_error(format!(
                    "note: at most {NOTE_LIMIT} characters, without control characters (newlines, tabs)"
                )))
            }
            _ => Ok(()),
        }
    }

    fn edit_error(&self, reason: String) -> StoreError {
        StoreError::Edit {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The table-of-contents MAC, ready to finalise or verify.
fn toc_mac(keys: &StoreKeys, file: &FileV1) -> Hmac<Sha256> {
    let key = keys.toc_mac_key();
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&key[..]).expect("HMAC accepts keys of any length");
    mac.update(&file.table_of_contents());
    mac
}

/// A tenant id as `tenants.id` allows it (the config crate's rule).
pub(crate) fn is_tenant_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A secret name as `${secret:NAME}` allows it, without a leading dot (such files are skipped
/// when importing a directory).
pub(crate) fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
