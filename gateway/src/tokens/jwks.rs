//! A passthrough route's cache of its issuer's public keys (JWKS).
//!
//! The request path reads the cached set with one arc-swap load. It never waits for a fetch,
//! except when there is nothing usable to verify with: no set yet (then one single-flight fetch
//! serves every waiting request), or a token names a key the set does not have (then one
//! refetch, at most every `jwks_min_refetch`, so a stream of made-up `kid`s cannot turn the
//! gateway against the issuer). A set older than `jwks_refresh` is refreshed in the background
//! while it keeps being used; when the endpoint cannot be reached it stays usable for
//! `jwks_grace` more, then the route answers 503 `jwks_unavailable` until a fetch succeeds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::Method;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::flight::SingleFlight;
use crate::observe::metrics::RouteMetrics;
use crate::upstream::fetch::{fetch, FetchRequest, FetchTarget};

/// Keys beyond this many in one document are ignored.
const MAX_KEYS: usize = 64;

/// The key cache of one route, carried across reloads while its settings stay the same.
pub(crate) struct JwksCache {
    /// What the cache was made for; a reload with other settings makes a new cache.
    pub(crate) identity: u64,
    target: FetchTarget,
    refresh: Duration,
    grace: Duration,
    min_refetch: Duration,
    keys: ArcSwapOption<KeySet>,
    flight: SingleFlight<bool>,
    /// Time origin of the `*_at` fields below.
    base: Instant,
    /// Milliseconds after `base` + 1 when the last fetch started (0: never).
    last_attempt: AtomicU64,
    /// Milliseconds after `base` + 1 when the last fetch failed, if it failed (0: it did not).
    last_failure: AtomicU64,
    metrics: Arc<RouteMetrics>,
}

/// A fetched key set.
pub(crate) struct KeySet {
    keys: Vec<PublicKey>,
    fetched: Instant,
}

/// One usable public key.
struct PublicKey {
    kid: Option<String>,
    /// The key's `alg`, when it names one: then it is used for that algorithm only.
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

/// What kind of key a JWK holds, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// The settings of a cache.
pub(crate) struct JwksSettings {
    /// Fresh for this long after a fetch.
    pub(crate) refresh: Duration,
    /// Usable this much longer while refreshing fails.
    pub(crate) grace: Duration,
    /// The shortest time between fetches not caused by expiry.
    pub(crate) min_refetch: Duration,
}

// === impl KeySet ===

impl KeySet {
    /// When the set was fetched: tells one set from the next (a refresh or a rotation).
    pub(crate) fn fetched(&self) -> Instant {
        self.fetched
    }

    /// A set without keys, fetched at `fetched`.
    #[cfg(test)]
    pub(crate) fn empty_for_tests(fetched: Instant) -> Self {
        Self {
            keys: Vec::new(),
            fetched,
        }
    }
}

// === impl JwksCache ===

impl JwksCache {
    /// An empty cache fetching from `target`.
    pub(crate) fn new(
        identity: u64,
        target: FetchTarget,
        settings: JwksSettings,
        metrics: Arc<RouteMetrics>,
    ) -> Self {
        Self {
            identity,
            target,
            refresh: settings.refresh,
            grace: settings.grace,
            min_refetch: settings.min_refetch,
            keys: ArcSwapOption::empty(),
            flight: SingleFlight::new(),
            base: Instant::now(),
            last_attempt: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            metrics,
        }
    }

    /// The key set to verify with now, or `None` when none can be had (503). Waits only when
    /// there is no usable set; starts a background refresh when the set is due for one.
    pub(crate) async fn current(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        if let Some(set) = self.keys.load_full() {
            let age = set.fetched.elapsed();
            if age < self.refresh {
                return Some(set);
            }
            if age < self.refresh + self.grace {
                if self.since_last_attempt() >= self.min_refetch {
                    // Not awaited: the request goes on with the set it has.
                    drop(self.start_fetch());
                }
                return Some(set);
            }
        }
        // Nothing usable. A fetch that failed moments ago is not repeated for every request.
        if self.failed_recently() {
            return None;
        }
        self.start_fetch().wait().await?;
        self.usable()
    }

    /// After a token named a key the set lacks: refetches (awaited) unless a fetch started
    /// less than `jwks_min_refetch` ago; returns the set to look in again.
    pub(crate) async fn refetch_for_unknown_key(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        if self.flight.in_flight() || self.since_last_attempt() >= self.min_refetch {
            self.start_fetch().wait().await?;
        }
        self.usable()
    }

    /// Starts a fetch (not awaited) if the cache has no keys yet and none is running or failed
    /// recently: warms a new cache before its first request.
    pub(crate) fn warm_in_background(self: &Arc<Self>) {
        if self.keys.load().is_none() && !self.flight.in_flight() && !self.failed_recently() {
            drop(self.start_fetch());
        }
    }

    fn usable(&self) -> Option<Arc<KeySet>> {
        self.keys
            .load_full()
            .filter(|set| set.fetched.elapsed() < self.refresh + self.grace)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn since_last_attempt(&self) -> Duration {
        match self.last_attempt.load(Ordering::Relaxed) {
            0 => Duration::MAX,
            at => Duration::from_millis(self.elapsed_ms().saturating_sub(at - 1)),
        }
    }

    fn failed_recently(&self) -> bool {
        match self.last_failure.load(Ordering::Relaxed) {
            0 => false,
            at => {
                Duration::from_millis(self.elapsed_ms().saturating_sub(at - 1)) < self.min_refetch
            }
        }
    }

    /// Joins or starts a fetch; its result says whether a new set was stored.
    fn start_fetch(self: &Arc<Self>) -> super::flight::Waiter<bool> {
        let this = Arc::clone(self);
        self.flight
            .join_or_start(move || async move { this.fetch_and_store().await })
    }

    async fn fetch_and_store(&self) -> bool {
        self.last_attempt
            .store(self.elapsed_ms() + 1, Ordering::Relaxed);
        let result = fetch(
            &self.target,
            FetchRequest {
                method: Method::GET,
                headers: Vec::new(),
                body: &[],
            },
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|resp| match resp.status {
            200 => parse_key_set(&resp.body),
            status => Err(format!("the JWKS endpoint answered {status}")),
        });
        match result {
            Ok(keys) => {
                tracing::debug!(jwks = %self.target.endpoint, keys = keys.len(), "fetched JWKS");
                self.keys.store(Some(Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                })));
                self.last_failure.store(0, Ordering::Relaxed);
                self.metrics.jwks_fetched(true);
                true
            }
            Err(error) => {
                tracing::warn!(jwks = %self.target.endpoint, %error, "cannot fetch JWKS; keeping the cached keys while they last");
                self.last_failure
                    .store(self.elapsed_ms() + 1, Ordering::Relaxed);
                self.metrics.jwks_fetched(false);
                false
            }
        }
    }
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("endpoint", &self.target.endpoint.to_string())
            .field("keys", &self.keys.load().as_ref().map(|s| s.keys.len()))
            .finish_non_exhaustive()
    }
}

// === impl KeySet ===

impl KeySet {
    /// The keys that may have signed a token with this `kid` and `alg`: of the algorithm's
    /// kind, with the same `alg` if the key names one, and the same `kid` if the token names
    /// one.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a DecodingKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| {
                k.kind.verifies(alg)
                    && k.alg.is_none_or(|a| a == alg)
                    && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
            })
            .map(|k| &k.key)
    }
}

// === impl KeyKind ===

impl KeyKind {
    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::P256, ES256)
                | (KeyKind::P384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

/// Parses a JWKS document, keeping the public signature keys the gateway can use and skipping
/// the rest (symmetric keys above all: a published `oct` key is never a verification key).
fn parse_key_set(body: &[u8]) -> Result<Vec<PublicKey>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not a key set: {e}"))?;
    let mut keys = Vec::new();
    for value in doc.keys.into_iter().take(MAX_KEYS) {
        let text = |name: &str| value.get(name).and_then(|v| v.as_str());
        if text("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let kind = match (text("kty"), text("crv")) {
            (Some("RSA"), _) => KeyKind::Rsa,
            (Some("EC"), Some("P-256")) => KeyKind::P256,
            (Some("EC"), Some("P-384")) => KeyKind::P384,
            (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
            _ => continue,
        };
        let alg = match text("alg") {
            None => None,
            Some(name) => match name.parse::<Algorithm>() {
                Ok(alg) if kind.verifies(alg) => Some(alg),
                // A key meant for something else (or for HMAC) is not used at all.
                _ => continue,
            },
        };
        let kid = text("kid").map(str::to_owned);
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(PublicKey {
            kid,
            alg,
            kind,
            key,
        });
    }
    if keys.is_empty() {
        return Err("the JWKS has no usable signature key".into());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_signature_keys_are_kept() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "wrong-alg", "alg": "HS256"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}
        ]});
        let keys = parse_key_set(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        let set = KeySet {
            keys,
            fetched: Instant::now(),
        };
        assert_eq!(set.candidates(Some("ed"), Algorithm::EdDSA).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::EdDSA).count(), 1);
        assert_eq!(set.candidates(Some("other"), Algorithm::EdDSA).count(), 0);
        // An Ed25519 key never verifies an RSA or HMAC signature.
        assert_eq!(set.candidates(Some("ed"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("ed"), Algorithm::HS256).count(), 0);
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert!(parse_key_set(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(parse_key_set(b"<html>").is_err());
    }
}
