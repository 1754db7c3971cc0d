//! How each secret has been used — last use, use count, the last upstream 401/403, rotation —
//! kept across reloads so the admin API and the console can tell an unused secret from one an
//! upstream keeps rejecting.
//!
//! The request path only touches atomics of an `Arc<SecretUsage>` resolved when its runtime was
//! built. The registry itself changes once per runtime build, in one batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::clock::now_ms;

/// How a secret has been used, kept across reloads (keyed by tenant and name). Updated with
/// atomics from the request path.
#[derive(Debug, Default)]
pub(crate) struct SecretUsage {
    use_count: AtomicU64,
    last_used_ms: AtomicU64,
    last_auth_failure_ms: AtomicU64,
    last_auth_failure_status: AtomicU64,
    rotated_ms: AtomicU64,
    fingerprint: ArcSwapOption<String>,
}

/// What a reload saw happen to a secret's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FingerprintChange {
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
pub(crate) struct SecretUsageRegistry {
    map: ArcSwap<HashMap<(String, String), Arc<SecretUsage>>>,
}

// === impl SecretUsage ===

impl SecretUsage {
    /// A request went upstream with this secret.
    #[cfg(test)]
    pub(crate) fn used(&self) {
        self.used_at(now_ms());
    }

    /// A request that ended at `at_ms` (Unix milliseconds) went upstream with this secret.
    pub(crate) fn used_at(&self, at_ms: u64) {
        self.use_count.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms.store(at_ms, Ordering::Relaxed);
    }

    /// The upstream answered 401 or 403 to a request carrying this secret.
    pub(crate) fn auth_failed(&self, status: u16) {
        self.last_auth_failure_ms.store(now_ms(), Ordering::Relaxed);
        self.last_auth_failure_status
            .store(u64::from(status), Ordering::Relaxed);
    }

    /// Records the fingerprint a new runtime loaded and says what changed.
    pub(crate) fn observe_fingerprint(&self, fingerprint: Option<&str>) -> FingerprintChange {
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
    pub(crate) fn use_count(&self) -> u64 {
        self.use_count.load(Ordering::Relaxed)
    }

    /// Last use, ms since the epoch (0: never).
    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Last upstream 401/403 (ms since the epoch, status), if any.
    pub(crate) fn last_auth_failure(&self) -> Option<(u64, u16)> {
        let at = self.last_auth_failure_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            let status = self.last_auth_failure_status.load(Ordering::Relaxed);
            (at, u16::try_from(status).unwrap_or(0))
        })
    }

    /// Last time a reload saw a new value (ms since the epoch), if it ever did.
    pub(crate) fn rotated_ms(&self) -> Option<u64> {
        let at = self.rotated_ms.load(Ordering::Relaxed);
        (at > 1).then_some(at)
    }
}

// === impl FingerprintChange ===

impl FingerprintChange {
    /// How the audit log and the log name a change worth reporting; `None` for no change.
    pub(crate) fn reported(self) -> Option<&'static str> {
        match self {
            FingerprintChange::Rotated => Some("rotated"),
            FingerprintChange::Appeared => Some("appeared"),
            FingerprintChange::Disappeared => Some("disappeared"),
            FingerprintChange::Unchanged | FingerprintChange::First => None,
        }
    }
}

// === impl SecretUsageRegistry ===

impl SecretUsageRegistry {
    /// The usage records of `pairs` (tenant, name), created for pairs not seen before. One
    /// update of the registry for the whole batch, whatever its size.
    pub(crate) fn resolve<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> HashMap<(String, String), Arc<SecretUsage>> {
        let current = self.map.load();
        let mut out = HashMap::new();
        let mut created = Vec::new();
        for (tenant, name) in pairs {
            let key = (tenant.to_owned(), name.to_owned());
            if out.contains_key(&key) {
                continue;
            }
            let usage = match current.get(&key) {
                Some(found) => Arc::clone(found),
                None => {
                    let usage = Arc::new(SecretUsage::default());
                    created.push((key.clone(), Arc::clone(&usage)));
                    usage
                }
            };
            out.insert(key, usage);
        }
        if !created.is_empty() {
            self.map.rcu(|map| {
                let mut map = HashMap::clone(map);
                for (key, usage) in &created {
                    // A concurrent build may have created the same pair: keep the first.
                    map.entry(key.clone()).or_insert_with(|| Arc::clone(usage));
                }
                map
            });
            // Hand out what the registry holds, in case a concurrent build won a pair.
            let map = self.map.load();
            for (key, usage) in out.iter_mut() {
                if let Some(kept) = map.get(key) {
                    *usage = Arc::clone(kept);
                }
            }
        }
        out
    }

    /// The usage record of a tenant's secret, if it was ever resolved.
    pub(crate) fn lookup(&self, tenant: &str, name: &str) -> Option<Arc<SecretUsage>> {
        self.map
            .load()
            .get(&(tenant.to_owned(), name.to_owned()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_survives_and_reports_rotation() {
        let registry = SecretUsageRegistry::default();
        let usage = Arc::clone(&registry.resolve([("acme", "pd")])[&("acme".into(), "pd".into())]);
        let again = registry.resolve([("acme", "pd"), ("acme", "pd")]);
        assert!(Arc::ptr_eq(&usage, &again[&("acme".into(), "pd".into())]));
        assert!(Arc::ptr_eq(
            &usage,
            &registry.lookup("acme", "pd").expect("resolved")
        ));
        assert!(registry.lookup("acme", "other").is_none());
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
    fn resolving_ten_thousand_pairs_updates_the_registry_once() {
        let registry = SecretUsageRegistry::default();
        let names: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
        let before = registry.map.load_full();
        let resolved = registry.resolve(names.iter().map(|n| ("acme", n.as_str())));
        assert_eq!(resolved.len(), 10_000);
        assert_eq!(registry.map.load().len(), 10_000);
        assert!(!Arc::ptr_eq(&before, &registry.map.load_full()));
        // Resolving the same pairs again creates nothing and keeps the map.
        let same = registry.map.load_full();
        registry.resolve(names.iter().map(|n| ("acme", n.as_str())));
        assert!(Arc::ptr_eq(&same, &registry.map.load_full()));
    }
}
