//! The secret store: tenant secrets resolved by name from the environment or a directory of files.
//!
//! Values are read when a snapshot is built (so rotating a file and reloading picks up the new
//! value) and held in [`SecretString`], whose `Debug` prints nothing. The only ways a value leaves
//! this module are [`SecretEntry::expose`] — used once, to build the sensitive header value that
//! goes upstream — and nowhere else: status reports carry a keyed fingerprint, never the value.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use portcullis_config::SecretSources;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Secrets for every (tenant, name) pair a snapshot references.
#[derive(Debug, Default)]
pub struct SecretStore {
    entries: HashMap<(String, String), SecretEntry>,
}

/// One resolved secret, or why it is not there.
#[derive(Debug)]
pub struct SecretEntry {
    value: Option<SecretString>,
    /// Where it was (or would have been) read from.
    pub source: SecretSource,
    /// A keyed hash prefix of the value: tells two versions apart without revealing either.
    pub fingerprint: Option<String>,
    /// When it was read.
    pub loaded_at: SystemTime,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file of the secrets directory.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// No source had it; lists where it was looked for.
    Missing(Vec<String>),
}

/// Reads environment variables; a parameter so tests and the demo need no process-wide state.
pub trait Environment {
    /// The value of a variable, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

// === impl SecretStore ===

impl SecretStore {
    /// Resolves each `(tenant, name)` once. Files win over the environment so that a mounted
    /// secret directory can override a deployment-wide variable.
    pub fn load<'a>(
        sources: &SecretSources,
        env: &dyn Environment,
        wanted: impl IntoIterator<Item = (&'a str, &'a str)>,
        fingerprint_key: &[u8; 32],
    ) -> Self {
        let mut entries = HashMap::new();
        for (tenant, name) in wanted {
            let key = (tenant.to_owned(), name.to_owned());
            if entries.contains_key(&key) {
                continue;
            }
            let entry = resolve(sources, env, tenant, name, fingerprint_key);
            entries.insert(key, entry);
        }
        Self { entries }
    }

    /// The entry for a tenant's secret, if the snapshot references it.
    pub fn get(&self, tenant: &str, name: &str) -> Option<&SecretEntry> {
        self.entries.get(&(tenant.to_owned(), name.to_owned()))
    }

    /// Every entry, keyed by (tenant, name).
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &SecretEntry)> {
        self.entries.iter()
    }
}

fn resolve(
    sources: &SecretSources,
    env: &dyn Environment,
    tenant: &str,
    name: &str,
    fingerprint_key: &[u8; 32],
) -> SecretEntry {
    let mut looked = Vec::new();
    let loaded_at = SystemTime::now();
    if let Some(dir) = &sources.dir {
        let path = dir.join(tenant).join(name);
        looked.push(path.display().to_string());
        if let Ok(text) = std::fs::read_to_string(&path) {
            // Files written by editors and `echo` end with a newline that is not part of the secret.
            let value = text.trim_end_matches(['\r', '\n']).to_owned();
            if !value.is_empty() {
                return SecretEntry::present(value, SecretSource::File(path), fingerprint_key);
            }
        }
    }
    if let Some(prefix) = &sources.env_prefix {
        let var = env_var_name(prefix, tenant, name);
        looked.push(format!("${var}"));
        if let Some(value) = env.var(&var).filter(|v| !v.is_empty()) {
            return SecretEntry::present(value, SecretSource::Env(var), fingerprint_key);
        }
    }
    SecretEntry {
        value: None,
        source: SecretSource::Missing(looked),
        fingerprint: None,
        loaded_at,
    }
}

/// `{prefix}{TENANT}_{NAME}`, uppercased, with every other character as `_`.
pub fn env_var_name(prefix: &str, tenant: &str, name: &str) -> String {
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
    fn present(value: String, source: SecretSource, key: &[u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(key);
        hasher.update(value.as_bytes());
        let fingerprint = hex::encode(&hasher.finalize()[..6]);
        Self {
            value: Some(SecretString::from(value)),
            source,
            fingerprint: Some(fingerprint),
            loaded_at: SystemTime::now(),
        }
    }

    /// True when a value was found.
    pub fn is_present(&self) -> bool {
        self.value.is_some()
    }

    /// The value, for building the upstream header. Do not log, format or store it elsewhere.
    pub fn expose(&self) -> Option<&str> {
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
            &[7; 32],
        );
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
            &[0; 32],
        );
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
        let store = SecretStore::load(&sources(None), &env, [("acme", "pd")], &[0; 32]);
        let debug = format!("{store:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn fingerprints_tell_versions_apart_and_depend_on_the_key() {
        let a = SecretEntry::present("one".into(), SecretSource::Env("X".into()), &[1; 32]);
        let b = SecretEntry::present("two".into(), SecretSource::Env("X".into()), &[1; 32]);
        let c = SecretEntry::present("one".into(), SecretSource::Env("X".into()), &[2; 32]);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.fingerprint.as_ref().unwrap().len(), 12);
    }
}
