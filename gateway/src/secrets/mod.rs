//! Tenant secrets, resolved by name from the encrypted store ([`store`]), a directory of files
//! or the environment — in that order.
//!
//! Values are read when a runtime is built (so rotating a file or a store record and reloading
//! picks up the new value) and held in [`SecretString`], whose `Debug` prints nothing; the
//! buffers they are read into are zeroed on drop. The only way a value leaves this module is [`SecretEntry::expose`] —
//! used to build the sensitive header value that goes upstream — and nowhere else: status
//! reports carry a keyed fingerprint ([`fingerprint`]), never the value.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use portcullis_config::SecretSources;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

mod fingerprint;
pub(crate) mod store;
mod usage;

pub(crate) use self::fingerprint::FingerprintKey;
use self::store::{MasterKey, StoreError, StoreFile};
pub(crate) use self::usage::{FingerprintChange, SecretUsage, SecretUsageRegistry};

/// Secrets for every (tenant, name) pair a snapshot references.
#[derive(Debug, Default)]
pub(crate) struct SecretStore {
    entries: HashMap<(String, String), SecretEntry>,
}

/// One resolved secret, or why it is not there.
#[derive(Debug)]
pub(crate) struct SecretEntry {
    value: Option<SecretString>,
    /// Where it was (or would have been) read from.
    pub(crate) source: SecretSource,
    /// A keyed hash prefix of the value: tells two versions apart without revealing either.
    pub(crate) fingerprint: Option<String>,
    /// When it was read.
    pub(crate) loaded_at: SystemTime,
    /// When it expires: the store's metadata, else a JWT's `exp`.
    pub(crate) expires: Option<SystemTime>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// A file of the secrets directory.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A record of the encrypted store (the store file, tenant and name: `FILE#TENANT/NAME`).
    Store(String),
    /// The store has a record but it does not open (altered, or moved from another record).
    /// The search stops there: a damaged record never falls back to another source.
    Undecryptable(String),
    /// No source had it; lists where it was looked for.
    Missing(Vec<String>),
}

/// Reads environment variables; a parameter so tests and the demo need no process-wide state.
pub(crate) trait Environment: Send + Sync {
    /// The value of a variable, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessEnv;

// === impl SecretStore ===

impl SecretStore {
    /// Resolves each `(tenant, name)` once: the store first, then files, then the
    /// environment. The store wins because it is the managed, authenticated source: after
    /// `portcullis secrets import` a leftover file cannot shadow a later `secrets rotate`.
    /// Files win over the environment so that a mounted secret directory can override a
    /// deployment-wide variable.
    ///
    /// Fails only when a store is configured and cannot be opened as a whole (no or wrong
    /// master key, unreadable, altered header or table of contents): then no runtime may be
    /// built from it. A single record that does not open is [`SecretSource::Undecryptable`].
    pub(crate) fn load<'a>(
        sources: &SecretSources,
        env: &dyn Environment,
        wanted: impl IntoIterator<Item = (&'a str, &'a str)>,
        key: &FingerprintKey,
    ) -> Result<Self, StoreError> {
        let store = match &sources.store {
            Some(path) => {
                let master =
                    MasterKey::load(sources.master_key_file.as_deref(), env).map_err(|source| {
                        StoreError::MasterKey {
                            path: path.clone(),
                            source,
                        }
                    })?;
                Some(StoreFile::open(path, &master)?)
            }
            None => None,
        };
        let mut entries = HashMap::new();
        for (tenant, name) in wanted {
            let pair = (tenant.to_owned(), name.to_owned());
            if entries.contains_key(&pair) {
                continue;
            }
            let entry = resolve(sources, store.as_ref(), env, tenant, name, key);
            entries.insert(pair, entry);
        }
        Ok(Self { entries })
    }

    /// The entry for a tenant's secret, if the snapshot references it.
    pub(crate) fn get(&self, tenant: &str, name: &str) -> Option<&SecretEntry> {
        self.entries.get(&(tenant.to_owned(), name.to_owned()))
    }

    /// Every entry, keyed by (tenant, name).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&(String, String), &SecretEntry)> {
        self.entries.iter()
    }

    /// How many secrets are referenced.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Names that editors and rotation tools give files while writing them: a secret is never read
/// from one, and their changes do not trigger a reload.
pub(crate) fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || name.ends_with(".tmp")
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".part")
}

fn resolve(
    sources: &SecretSources,
    store: Option<&StoreFile>,
    env: &dyn Environment,
    tenant: &str,
    name: &str,
    key: &FingerprintKey,
) -> SecretEntry {
    let mut looked = Vec::new();
    let loaded_at = SystemTime::now();
    if let Some(store) = store {
        let location = format!("{}#{tenant}/{name}", store.path().display());
        match store.open_value(tenant, name) {
            Some(Ok(opened)) => {
                let value = opened.value.expose_secret();
                return SecretEntry {
                    source: SecretSource::Store(location),
                    // The store's own fingerprint (keyed by its master key): the one
                    // `portcullis secrets list` shows.
                    fingerprint: Some(opened.fingerprint.clone()),
                    loaded_at,
                    expires: opened
                        .expires
                        .map(store::Timestamp::to_system_time)
                        .or_else(|| jwt_expiry(value)),
                    value: Some(opened.value),
                };
            }
            Some(Err(_)) => {
                return SecretEntry {
                    value: None,
                    source: SecretSource::Undecryptable(location),
                    fingerprint: None,
                    loaded_at,
                    expires: None,
                };
            }
            None => looked.push(location),
        }
    }
    if let Some(dir) = &sources.dir {
        let path = dir.join(tenant).join(name);
        looked.push(path.display().to_string());
        if let Ok(text) = std::fs::read_to_string(&path).map(Zeroizing::new) {
            // Files written by editors and `echo` end with a newline that is not part of the secret.
            let value = text.trim_end_matches(['\r', '\n']);
            if !value.is_empty() {
                return SecretEntry::present(value, SecretSource::File(path), key);
            }
        }
    }
    if let Some(prefix) = &sources.env_prefix {
        let var = env_var_name(prefix, tenant, name);
        looked.push(format!("${var}"));
        if let Some(value) = env.var(&var).map(Zeroizing::new) {
            if !value.is_empty() {
                return SecretEntry::present(&value, SecretSource::Env(var), key);
            }
        }
    }
    SecretEntry {
        value: None,
        source: SecretSource::Missing(looked),
        fingerprint: None,
        loaded_at,
        expires: None,
    }
}

/// The `exp` of a JWT-shaped value (three base64url parts), if it has one.
pub(crate) fn jwt_expiry(value: &str) -> Option<SystemTime> {
    let mut parts = value.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp > 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(exp))
}

/// `{prefix}{TENANT}_{NAME}`, uppercased, with every other character as `_`.
pub(crate) fn env_var_name(prefix: &str, tenant: &str, name: &str) -> String {
    let mut var = String::with_capacity(prefix.len() + tenant.len() + name.len() + 1);
    var.push_str(prefix);
    let upper = |c: char| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    };
    var.extend(tenant.chars().map(upper));
    var.push('_');
    var.extend(name.chars().map(upper));
    var
}

// === impl SecretEntry ===

impl SecretEntry {
    fn present(value: &str, source: SecretSource, key: &FingerprintKey) -> Self {
        Self {
            value: Some(SecretString::from(value)),
            source,
            fingerprint: Some(key.fingerprint(value.as_bytes())),
            loaded_at: SystemTime::now(),
            expires: jwt_expiry(value),
        }
    }

    /// True when a value was found.
    pub(crate) fn is_present(&self) -> bool {
        self.value.is_some()
    }

    /// True when the store has the secret but its record does not open.
    pub(crate) fn is_undecryptable(&self) -> bool {
        matches!(self.source, SecretSource::Undecryptable(_))
    }

    /// The value, for building the upstream header. Do not log, format or store it elsewhere.
    pub(crate) fn expose(&self) -> Option<&str> {
        self.value.as_ref().map(|v| v.expose_secret())
    }
}

// === impl ProcessEnv ===

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: Option<PathBuf>) -> SecretSources {
        SecretSources {
            env_prefix: Some("PORTCULLIS_SECRET_".into()),
            dir,
            ..SecretSources::default()
        }
    }

    #[test]
    fn env_var_names_are_uppercased_and_sanitised() {
        assert_eq!(
            env_var_name("PORTCULLIS_SECRET_", "acme-eu", "pager.duty"),
            "PORTCULLIS_SECRET_ACME_EU_PAGER_DUTY"
        );
    }

    #[test]
    fn files_win_over_env_and_lose_their_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("acme")).unwrap();
        std::fs::write(dir.path().join("acme").join("pd"), "from-file\n").unwrap();
        let env: HashMap<String, String> = [(
            "PORTCULLIS_SECRET_ACME_PD".to_owned(),
            "from-env".to_owned(),
        )]
        .into();
        let store = SecretStore::load(
            &sources(Some(dir.path().to_path_buf())),
            &env,
            [("acme", "pd")],
            &FingerprintKey::fixed(7),
        )
        .unwrap();
        let entry = store.get("acme", "pd").unwrap();
        assert_eq!(entry.expose(), Some("from-file"));
        assert!(matches!(entry.source, SecretSource::File(_)));
    }

    #[test]
    fn env_is_used_when_no_file_and_missing_lists_where_it_looked() {
        let env: HashMap<String, String> =
            [("PORTCULLIS_SECRET_ACME_PD".to_owned(), "v".to_owned())].into();
        let store = SecretStore::load(
            &sources(None),
            &env,
            [("acme", "pd"), ("acme", "x")],
            &FingerprintKey::fixed(0),
        )
        .unwrap();
        assert_eq!(store.get("acme", "pd").unwrap().expose(), Some("v"));
        let missing = store.get("acme", "x").unwrap();
        assert!(!missing.is_present());
        assert_eq!(
            missing.source,
            SecretSource::Missing(vec!["$PORTCULLIS_SECRET_ACME_X".into()])
        );
    }

    #[test]
    fn debug_output_never_contains_the_value() {
        let env: HashMap<String, String> = [(
            "PORTCULLIS_SECRET_ACME_PD".to_owned(),
            "hunter2-value".to_owned(),
        )]
        .into();
        let store = SecretStore::load(
            &sources(None),
            &env,
            [("acme", "pd")],
            &FingerprintKey::fixed(0),
        )
        .unwrap();
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn jwt_expiry_is_read_from_the_payload() {
        // {"alg":"none"} . {"sub":"x","exp":2000000000} . sig
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwiZXhwIjoyMDAwMDAwMDAwfQ.c2ln";
        assert_eq!(
            jwt_expiry(jwt),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.b.c"), None);
    }
}
