//! An exchange route's token: obtained from the token endpoint with the tenant's key and
//! secret, cached, refreshed before it expires, shared by every request of the route.
//!
//! The request path reads the cached token with one arc-swap load. Within `refresh_skew` of
//! its expiry a request starts a background refresh (single flight) and goes on with the token
//! it has; only when there is no valid token does a request wait, and then every waiting
//! request shares one exchange. A failed exchange is not retried for [`FAILURE_HOLD`]: requests
//! in that window fail at once instead of queueing behind a token endpoint that is down.
//!
//! An upstream 401 to a request that carried the cached token invalidates that token (once: a
//! newer token is left alone), so the next request exchanges again.
//!
//! Neither the secrets sent nor the token received appear in a log line, an error or the
//! status: errors say what failed (status code, JSON pointer, connection), never a body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use base64::Engine;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};
use portcullis_config::{ClientAuth, Exchange, ExchangeKind};
use zeroize::Zeroizing;

use super::flight::SingleFlight;
use crate::clock::{now_ms, unix_ms};
use crate::observe::metrics::RouteMetrics;
use crate::secrets::jwt_expiry;
use crate::upstream::fetch::{fetch, FetchRequest, FetchTarget};

/// How long after a failed exchange requests fail without trying again.
pub(crate) const FAILURE_HOLD: Duration = Duration::from_secs(1);
/// The lifetime assumed when the answer states none (and the token is not a JWT with `exp`).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Lifetimes are capped at a day.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The credentials an exchange sends, resolved from the tenant's secrets. `Debug` shows nothing.
pub(crate) enum ExchangeSecrets {
    /// `client_credentials`.
    ClientCredentials {
        /// The client id.
        client_id: Zeroizing<String>,
        /// The client secret.
        client_secret: Zeroizing<String>,
    },
    /// `json_post`: the body with every reference filled in (JSON-escaped).
    JsonPost {
        /// The body.
        body: Zeroizing<String>,
    },
}

/// The token state of one exchange route, carried across reloads while its settings and
/// secrets stay the same.
pub(crate) struct ExchangeState {
    /// What the state was made for; a reload with other settings or secrets makes a new one.
    pub(crate) identity: u64,
    spec: Exchange,
    secrets: ExchangeSecrets,
    target: FetchTarget,
    cached: ArcSwapOption<CachedToken>,
    flight: SingleFlight<Result<Arc<CachedToken>, ExchangeError>>,
    generation: AtomicU64,
    base: Instant,
    /// Milliseconds after `base` + 1 of the last failure (0: the last exchange succeeded).
    last_failure: AtomicU64,
    exchanges: AtomicU64,
    last_exchange_ms: AtomicU64,
    last_error: ArcSwapOption<ExchangeError>,
    metrics: Arc<RouteMetrics>,
}

/// A token obtained by an exchange, ready to send.
pub(crate) struct CachedToken {
    /// The upstream header value (prefix and token), marked sensitive.
    pub(crate) value: HeaderValue,
    /// Which exchange produced it (for invalidation).
    pub(crate) generation: u64,
    refresh_at: Instant,
    expires: Instant,
    expires_wall: SystemTime,
}

/// Why an exchange failed: a message with no secret, no token and no response body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ExchangeError(Arc<str>);

/// The status of an exchange route.
pub(crate) struct ExchangeSnapshot {
    /// Until when the cached token is used (Unix ms).
    pub(crate) cached_until_ms: Option<u64>,
    /// When the last exchange finished (Unix ms).
    pub(crate) last_exchange_ms: Option<u64>,
    /// Exchanges performed.
    pub(crate) exchanges: u64,
    /// Why the last exchange failed, if it did.
    pub(crate) last_error: Option<String>,
}

// === impl ExchangeState ===

impl ExchangeState {
    /// A state with no token yet.
    pub(crate) fn new(
        identity: u64,
        spec: Exchange,
        secrets: ExchangeSecrets,
        target: FetchTarget,
        metrics: Arc<RouteMetrics>,
    ) -> Self {
        Self {
            identity,
            spec,
            secrets,
            target,
            cached: ArcSwapOption::empty(),
            flight: SingleFlight::new(),
            generation: AtomicU64::new(0),
            base: Instant::now(),
            last_failure: AtomicU64::new(0),
            exchanges: AtomicU64::new(0),
            last_exchange_ms: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            metrics,
        }
    }

    /// The token to send now: the cached one while it is valid (refreshed in the background
    /// once it is within the skew of expiring), else the result of one shared exchange.
    pub(crate) async fn token(self: &Arc<Self>) -> Result<Arc<CachedToken>, ExchangeError> {
        let now = Instant::now();
        if let Some(token) = self.cached.load_full() {
            if now < token.refresh_at {
                return Ok(token);
            }
            if now < token.expires {
                if !self.failed_recently() {
                    // Not awaited: this request goes on with the token it has.
                    drop(self.start_exchange());
                }
                return Ok(token);
            }
        }
        if self.failed_recently() {
            if let Some(error) = self.last_error.load_full() {
                return Err(ExchangeError::clone(&error));
            }
        }
        self.start_exchange()
            .wait()
            .await
            .unwrap_or_else(|| Err(ExchangeError::new("the exchange was cancelled")))
    }

    /// The upstream refused `generation`'s token: drop it unless a newer one replaced it.
    pub(crate) fn invalidate(&self, generation: u64) {
        let current = self.cached.load();
        if current.as_ref().is_some_and(|t| t.generation == generation) {
            let _ = self.cached.compare_and_swap(&*current, None);
            tracing::info!(endpoint = %self.target.endpoint, "the upstream refused the exchanged token; exchanging again");
        }
    }

    /// The route's exchange status (no secret, no token).
    pub(crate) fn snapshot(&self) -> ExchangeSnapshot {
        let now = Instant::now();
        let last = self.last_exchange_ms.load(Ordering::Relaxed);
        ExchangeSnapshot {
            cached_until_ms: self
                .cached
                .load()
                .as_ref()
                .filter(|t| t.expires > now)
                .map(|t| unix_ms(t.expires_wall)),
            last_exchange_ms: (last > 0).then_some(last),
            exchanges: self.exchanges.load(Ordering::Relaxed),
            last_error: (self.last_failure.load(Ordering::Relaxed) > 0)
                .then(|| self.last_error.load_full().map(|e| e.to_string()))
                .flatten(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn failed_recently(&self) -> bool {
        match self.last_failure.load(Ordering::Relaxed) {
            0 => false,
            at => Duration::from_millis(self.elapsed_ms().saturating_sub(at - 1)) < FAILURE_HOLD,
        }
    }

    fn start_exchange(
        self: &Arc<Self>,
    ) -> super::flight::Waiter<Result<Arc<CachedToken>, ExchangeError>> {
        let this = Arc::clone(self);
        self.flight
            .join_or_start(move || async move { this.exchange_and_store().await })
    }

    async fn exchange_and_store(&self) -> Result<Arc<CachedToken>, ExchangeError> {
        let started = Instant::now();
        let result = self.exchange().await;
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        self.last_exchange_ms.store(now_ms(), Ordering::Relaxed);
        match result {
            Ok((token, lifetime)) => {
                let lifetime = lifetime.clamp(Duration::from_secs(1), MAX_LIFETIME);
                // Refresh `refresh_skew` early, or half-way when the token lives shorter.
                let early = if self.spec.refresh_skew < lifetime {
                    self.spec.refresh_skew
                } else {
                    lifetime / 2
                };
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let cached = Arc::new(CachedToken {
                    value: token,
                    generation,
                    refresh_at: started + (lifetime - early),
                    expires: started + lifetime,
                    expires_wall: SystemTime::now() + lifetime - started.elapsed(),
                });
                self.cached.store(Some(Arc::clone(&cached)));
                self.last_failure.store(0, Ordering::Relaxed);
                self.metrics.exchanged(true);
                tracing::debug!(endpoint = %self.target.endpoint, lifetime_s = lifetime.as_secs(), "token exchanged");
                Ok(cached)
            }
            Err(error) => {
                tracing::warn!(endpoint = %self.target.endpoint, %error, "token exchange failed");
                self.last_failure
                    .store(self.elapsed_ms() + 1, Ordering::Relaxed);
                self.last_error.store(Some(Arc::new(error.clone())));
                self.metrics.exchanged(false);
                Err(error)
            }
        }
    }

    /// One exchange: the token's header value and its lifetime.
    async fn exchange(&self) -> Result<(HeaderValue, Duration), ExchangeError> {
        let (headers, body, content_type) = match (&self.spec.kind, &self.secrets) {
            (
                ExchangeKind::ClientCredentials {
                    scope,
                    audience,
                    client_auth,
                    ..
                },
                ExchangeSecrets::ClientCredentials {
                    client_id,
                    client_secret,
                },
            ) => {
                let mut form = form_urlencoded_pairs(&[("grant_type", "client_credentials")]);
                let mut headers = Vec::new();
                match client_auth {
                    ClientAuth::Basic => {
                        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
                        let pair = Zeroizing::new(format!(
                            "{}:{}",
                            &*form_urlencode(client_id),
                            &*form_urlencode(client_secret)
                        ));
                        let encoded = Zeroizing::new(
                            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
                        );
                        let mut value = HeaderValue::from_str(&format!("Basic {}", &*encoded))
                            .map_err(|_| {
                                ExchangeError::new(
                                    "the client credentials are not valid in a header",
                                )
                            })?;
                        value.set_sensitive(true);
                        headers.push((AUTHORIZATION, value));
                    }
                    ClientAuth::Post => {
                        form.push('&');
                        form.push_str(&form_urlencoded_pairs(&[
                            ("client_id", client_id.as_str()),
                            ("client_secret", client_secret.as_str()),
                        ]));
                    }
                }
                if let Some(scope) = scope {
                    form.push('&');
                    form.push_str(&form_urlencoded_pairs(&[("scope", scope)]));
                }
                if let Some(audience) = audience {
                    form.push('&');
                    form.push_str(&form_urlencoded_pairs(&[("audience", audience)]));
                }
                (headers, form, "application/x-www-form-urlencoded")
            }
            (ExchangeKind::JsonPost { .. }, ExchangeSecrets::JsonPost { body }) => (
                Vec::new(),
                Zeroizing::new(body.to_string()),
                "application/json",
            ),
            _ => return Err(ExchangeError::new("internal: credentials of another kind")),
        };
        let mut headers = headers;
        headers.push((CONTENT_TYPE, HeaderValue::from_static(content_type)));
        let resp = fetch(
            &self.target,
            FetchRequest {
                method: Method::POST,
                headers,
                body: body.as_bytes(),
            },
        )
        .await
        .map_err(|e| ExchangeError::new(&e.to_string()))?;
        drop(body);
        if !(200..300).contains(&resp.status) {
            return Err(ExchangeError::new(&format!(
                "the token endpoint answered {}{}",
                resp.status,
                oauth_error_code(&resp.body).map_or(String::new(), |c| format!(" ({c})"))
            )));
        }
        let answer: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|_| ExchangeError::new("the token endpoint's answer is not JSON"))?;
        let (token_pointer, lifetime_pointer) = match &self.spec.kind {
            ExchangeKind::ClientCredentials { .. } => ("/access_token", Some("/expires_in")),
            ExchangeKind::JsonPost {
                token_pointer,
                expires_in_pointer,
                ..
            } => (token_pointer.as_str(), expires_in_pointer.as_deref()),
        };
        let token = answer
            .pointer(token_pointer)
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .map(|t| Zeroizing::new(t.to_owned()))
            .ok_or_else(|| {
                ExchangeError::new(&format!("the answer has no token at {token_pointer}"))
            })?;
        let lifetime = lifetime_pointer
            .and_then(|p| answer.pointer(p))
            .and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(s) => s.parse::<f64>().ok(),
                _ => None,
            })
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64())))
            .or_else(|| {
                jwt_expiry(&token).and_then(|exp| exp.duration_since(SystemTime::now()).ok())
            })
            .unwrap_or(DEFAULT_LIFETIME);
        drop(answer);
        let text = Zeroizing::new(format!("{}{}", self.spec.prefix, &*token));
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| ExchangeError::new("the token is not a valid header value"))?;
        value.set_sensitive(true);
        Ok((value, lifetime))
    }
}

impl std::fmt::Debug for ExchangeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeState")
            .field("kind", &self.spec.kind.as_str())
            .field("endpoint", &self.target.endpoint.to_string())
            .field("exchanges", &self.exchanges.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// === impl ExchangeSecrets ===

impl std::fmt::Debug for ExchangeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeSecrets(..)")
    }
}

// === impl ExchangeError ===

impl ExchangeError {
    fn new(message: &str) -> Self {
        Self(Arc::from(message))
    }
}

/// The OAuth error code of an error answer (RFC 6749 §5.2: `{"error": "invalid_client"}`),
/// when it is one: a short lowercase word, nothing else of the body.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = answer.get("error")?.as_str()?;
    (!code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    .then(|| code.to_owned())
}

/// `application/x-www-form-urlencoded` of name-value pairs.
fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&form_urlencode(name));
        out.push('=');
        out.push_str(&form_urlencode(value));
    }
    out
}

/// Form-encodes one value (spaces as `+`, everything but unreserved characters escaped).
fn form_urlencode(value: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(value.len()));
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_oauth_error_code_is_kept_from_an_error_answer() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_client","error_description":"secret s3cr3t"}"#),
            Some("invalid_client".into())
        );
        assert_eq!(oauth_error_code(br#"{"error":"s3cr3t-Value"}"#), None);
        assert_eq!(oauth_error_code(b"<html>"), None);
    }

    #[test]
    fn form_encoding_escapes_everything_but_unreserved() {
        assert_eq!(&*form_urlencode("a b+c/d:é"), "a+b%2Bc%2Fd%3A%C3%A9");
        assert_eq!(
            &*form_urlencoded_pairs(&[("grant_type", "client_credentials"), ("scope", "a b")]),
            "grant_type=client_credentials&scope=a+b"
        );
    }
}
