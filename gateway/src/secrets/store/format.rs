//! The store file on disk (JSON, version 1) and the exact bytes that are authenticated.
//!
//! ```json
//! {
//!   "portcullis_secret_store": 1,
//!   "salt": "<base64, 32 bytes>",
//!   "key_check": "<base64, 32 bytes>",
//!   "records": [
//!     { "tenant": "acme", "name": "pagerduty",
//!       "created": "2026-01-05T10:00:00Z", "rotated": null, "expires": "2026-04-01T00:00:00Z",
//!       "note": "PagerDuty REST key, owner: sre", "fingerprint": "3f9a0c17b2e4",
//!       "history": [{ "fingerprint": "…", "replaced": "…" }],
//!       "nonce": "<base64, 24 bytes>", "sealed": "<base64: ciphertext and tag>" }
//!   ],
//!   "toc_mac": "<base64, 32 bytes>"
//! }
//! ```
//!
//! Authenticated bytes are length-prefixed fields (a 4-byte big-endian length, then the bytes),
//! never JSON, so no re-serialisation can change what was signed:
//! - a record's associated data: a domain tag, tenant, name, and all its metadata — so moving a
//!   sealed value to another tenant or name, or editing its expiry, note or history, makes that
//!   record fail to open;
//! - the table of contents: a domain tag, the version, salt and key check, and every record's
//!   tenant, name and nonce in order — so adding, removing, renaming or rolling back a record
//!   (an older copy has another nonce) makes the whole file fail to open.

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The file format version this build reads and writes.
pub(crate) const VERSION: u32 = 1;

const RECORD_TAG: &[u8] = b"portcullis-store/v1/record";
const TOC_TAG: &[u8] = b"portcullis-store/v1/toc";

/// Just enough to read the version before committing to a layout.
#[derive(Debug, Deserialize)]
pub(crate) struct Probe {
    /// The format version.
    pub(crate) portcullis_secret_store: u32,
}

/// The whole file, version 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileV1 {
    /// Always [`VERSION`].
    pub(crate) portcullis_secret_store: u32,
    /// Random per store; salts every key derivation but the fingerprint key's.
    pub(crate) salt: B64,
    /// HKDF output published to tell a wrong master key from a damaged file.
    pub(crate) key_check: B64,
    /// Sorted by (tenant, name), each pair once.
    pub(crate) records: Vec<RecordV1>,
    /// HMAC-SHA256 of the table of contents.
    pub(crate) toc_mac: B64,
}

/// One sealed value and its metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordV1 {
    /// Owning tenant.
    pub(crate) tenant: String,
    /// Secret name.
    pub(crate) name: String,
    /// When the record was first set.
    pub(crate) created: Timestamp,
    /// When its value was last replaced.
    pub(crate) rotated: Option<Timestamp>,
    /// When the value stops being valid, as the operator declared.
    pub(crate) expires: Option<Timestamp>,
    /// Free text for operators.
    pub(crate) note: Option<String>,
    /// Keyed fingerprint of the current value.
    pub(crate) fingerprint: String,
    /// Fingerprints of earlier values, oldest first.
    pub(crate) history: Vec<HistoryV1>,
    /// XChaCha20-Poly1305 nonce, random per seal.
    pub(crate) nonce: B64,
    /// Ciphertext followed by the 16-byte tag.
    pub(crate) sealed: B64,
}

/// An earlier value of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryV1 {
    /// Its fingerprint.
    pub(crate) fingerprint: String,
    /// When it was replaced.
    pub(crate) replaced: Timestamp,
}

/// Seconds since the Unix epoch, written as RFC 3339 in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(pub(crate) i64);

/// Bytes written as standard base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct B64(pub(crate) Vec<u8>);

// === impl RecordV1 ===

impl RecordV1 {
    /// The associated data its value is sealed with: identity and every metadata field.
    pub(crate) fn associated_data(&self) -> Vec<u8> {
        let mut out = Canonical::new(RECORD_TAG);
        out.bytes(self.tenant.as_bytes());
        out.bytes(self.name.as_bytes());
        out.time(Some(self.created));
        out.time(self.rotated);
        out.time(self.expires);
        match &self.note {
            None => out.u32(0),
            Some(note) => {
                out.u32(1);
                out.bytes(note.as_bytes());
            }
        }
        out.bytes(self.fingerprint.as_bytes());
        out.len(self.history.len());
        for h in &self.history {
            out.bytes(h.fingerprint.as_bytes());
            out.time(Some(h.replaced));
        }
        out.0
    }
}

// === impl FileV1 ===

impl FileV1 {
    /// The table of contents the file MAC covers.
    pub(crate) fn table_of_contents(&self) -> Vec<u8> {
        let mut out = Canonical::new(TOC_TAG);
        out.u32(self.portcullis_secret_store);
        out.bytes(&self.salt.0);
        out.bytes(&self.key_check.0);
        out.len(self.records.len());
        for r in &self.records {
            out.bytes(r.tenant.as_bytes());
            out.bytes(r.name.as_bytes());
            out.bytes(&r.nonce.0);
        }
        out.0
    }
}

/// Builds length-prefixed byte strings.
struct Canonical(Vec<u8>);

// === impl Canonical ===

impl Canonical {
    fn new(tag: &[u8]) -> Self {
        let mut out = Self(Vec::with_capacity(256));
        out.bytes(tag);
        out
    }

    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn len(&mut self, n: usize) {
        // Lengths above 4 GiB cannot occur in a file that was read into memory as JSON; saturate
        // rather than wrap so two different lengths never encode alike.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn time(&mut self, t: Option<Timestamp>) {
        match t {
            None => self.u32(0),
            Some(t) => {
                self.u32(1);
                self.0.extend_from_slice(&t.0.to_be_bytes());
            }
        }
    }
}

// === impl Timestamp ===

impl Timestamp {
    /// Now, to the second.
    pub(crate) fn now() -> Self {
        Self(OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Parses RFC 3339 (any offset); sub-second digits are dropped.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| Self(t.unix_timestamp()))
            .map_err(|e| {
                format!("'{text}' is not an RFC 3339 time (e.g. 2026-04-01T00:00:00Z): {e}")
            })
    }

    /// As RFC 3339 in UTC.
    pub(crate) fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }

    /// As a `SystemTime`.
    pub(crate) fn to_system_time(self) -> std::time::SystemTime {
        let base = std::time::UNIX_EPOCH;
        let offset = std::time::Duration::from_secs(self.0.unsigned_abs());
        let time = if self.0 >= 0 {
            base.checked_add(offset)
        } else {
            base.checked_sub(offset)
        };
        time.unwrap_or(base)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

// === impl B64 ===

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}
