//! The secret store: tenant secrets resolved by name from the environment or a directory of files.
//!
//! Values are read when a snapshot is built (so rotating a file and reloading picks up the new
//! value) and held in [`SecretString`], whose `Debug` prints nothing. The only ways a value leaves
//! this module are [`SecretEntry::expose`] — used once, to build the sensitive header value that
//! goes upstream — and nowhere else: status reports carry a keyed fingerprint, never the value.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine;

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
    /// When it expires, if it says (a JWT's `exp`).
    pub expires: Option<SystemTime>,
}

/// How a secret has been used, kept across reloads (keyed by tenant and name). Updated with
/// atomics from the request path.
#[derive(Debug, Default)]
pub struct SecretUsage {
    use_count: AtomicU64,
    last_used_ms: AtomicU64,
    last_auth_failure_ms: AtomicU64,
    last_auth_failure_status: AtomicU64,
    rotated_ms: AtomicU64,
    fingerprint: ArcSwapOption<String>,
}

/// What a reload saw happen to a secret's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintChange {
    /// Same value as before (or still missing).
    Unchanged,
    /// Seen for the first time by this process.
    First,
    /// A different value than before.
    Rotated,
    /// Present now, missing before.
    Appeared,
    /// Missing now, present before.
    Disappeared,
}

/// Usage records of every secret, surviving reloads.
#[derive(Debug, Default)]
pub struct SecretUsageRegistry {
    map: ArcSwap<HashMap<(String, String), Arc<SecretUsage>>>,
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
pub trait Environment: Send + Sync {
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
        expires: None,
    }
}

/// The `exp` of a JWT-shaped value (three base64url parts), if it has one.
pub fn jwt_expiry(value: &str) -> Option<SystemTime> {
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

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// === impl SecretUsage ===

impl SecretUsage {
    /// A request went upstream with this secret.
    pub fn used(&self) {
        self.use_count.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The upstream answered 401 or 403 to a request carrying this secret.
    pub fn auth_failed(&self, status: u16) {
        self.last_auth_failure_ms.store(now_ms(), Ordering::Relaxed);
        self.last_auth_failure_status
            .store(u64::from(status), Ordering::Relaxed);
    }

    /// Records the fingerprint a new snapshot loaded and says what changed.
    pub fn observe_fingerprint(&self, fingerprint: Option<&str>) -> FingerprintChange {
        let previous = self
            .fingerprint
            .swap(fingerprint.map(|f| Arc::new(f.to_owned())));
        let change = match (previous.as_deref().map(String::as_str), fingerprint) {
            (None, None) => FingerprintChange::Unchanged,
            (Some(a), Some(b)) if a == b => FingerprintChange::Unchanged,
            (Some(_), Some(_)) => FingerprintChange::Rotated,
            (None, Some(_))
                if self.rotated_ms.load(Ordering::Relaxed) == 0
                    && self.use_count.load(Ordering::Relaxed) == 0 =>
            {
                FingerprintChange::First
            }
            (None, Some(_)) => FingerprintChange::Appeared,
            (Some(_), None) => FingerprintChange::Disappeared,
        };
        if matches!(
            change,
            FingerprintChange::Rotated | FingerprintChange::Appeared
        ) {
            self.rotated_ms.store(now_ms(), Ordering::Relaxed);
        }
        if change == FingerprintChange::First {
            // Marks "seen" so that a later missing->present is reported as Appeared.
            self.rotated_ms.store(1, Ordering::Relaxed);
        }
        change
    }

    /// Requests that carried the secret.
    pub fn use_count(&self) -> u64 {
        self.use_count.load(Ordering::Relaxed)
    }

    /// Last use, ms since the epoch (0: never).
    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Last upstream 401/403 (ms since the epoch, status), if any.
    pub fn last_auth_failure(&self) -> Option<(u64, u16)> {
        let at = self.last_auth_failure_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            (
                at,
                self.last_auth_failure_status.load(Ordering::Relaxed) as u16,
            )
        })
    }

    /// Last time a reload saw a new value (ms since the epoch), if it ever did.
    pub fn rotated_ms(&self) -> Option<u64> {
        let at = self.rotated_ms.load(Ordering::Relaxed);
        (at > 1).then_some(at)
    }
}

// === impl SecretUsageRegistry ===

impl SecretUsageRegistry {
    /// The usage record of a tenant's secret, created on first sight.
    pub fn get(&self, tenant: &str, name: &str) -> Arc<SecretUsage> {
        let key = (tenant.to_owned(), name.to_owned());
        if let Some(found) = self.map.load().get(&key) {
            return Arc::clone(found);
        }
        let mut created = None;
        self.map.rcu(|map| {
            let mut map = HashMap::clone(map);
            let entry = map.entry(key.clone()).or_default();
            created = Some(Arc::clone(entry));
            map
        });
        created.unwrap_or_default()
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
        let expires = jwt_expiry(&value);
        Self {
            value: Some(SecretString::from(value)),
            source,
            fingerprint: Some(fingerprint),
            loaded_at: SystemTime::now(),
            expires,
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

    #[test]
    fn usage_survives_and_reports_rotation() {
        let registry = SecretUsageRegistry::default();
        let usage = registry.get("acme", "pd");
        assert!(Arc::ptr_eq(&usage, &registry.get("acme", "pd")));
        assert_eq!(
            usage.observe_fingerprint(Some("aa")),
            FingerprintChange::First
        );
        assert_eq!(
            usage.observe_fingerprint(Some("aa")),
            FingerprintChange::Unchanged
        );
        assert_eq!(
            usage.observe_fingerprint(Some("bb")),
            FingerprintChange::Rotated
        );
        assert!(usage.rotated_ms().is_some());
        assert_eq!(
            usage.observe_fingerprint(None),
            FingerprintChange::Disappeared
        );
        assert_eq!(
            usage.observe_fingerprint(Some("cc")),
            FingerprintChange::Appeared
        );
        usage.used();
        usage.auth_failed(401);
        assert_eq!(usage.use_count(), 1);
        assert_eq!(usage.last_auth_failure().map(|(_, s)| s), Some(401));
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
