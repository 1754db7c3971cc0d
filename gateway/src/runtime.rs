//! The runtime snapshot: a compiled config plus everything the request path needs that the pure
//! config crate cannot hold — resolved secrets as ready-made sensitive header values, upstream
//! load balancers, CA bundles, egress selectors and the published egress document.
//!
//! It is built whole, off the request path, and published with a single `ArcSwap::store`:
//! one snapshot, one swap. A request loads it once and keeps it to the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::lb::LoadBalancer;
use pingora::prelude::RoundRobin;
use portcullis_config::{Snapshot, TemplatePart};

use crate::egress::{egress_document, EgressSelector};
use crate::metrics::{Metrics, RouteMetrics};
use crate::secrets::{
    Environment, FingerprintChange, SecretStore, SecretUsage, SecretUsageRegistry,
};
use crate::upstream::{build_load_balancer, load_ca_bundle, CaBundle, UpstreamError};

/// The live runtime, shared by the proxy, the admin API and the background tasks.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

/// Everything one configuration version needs at request time.
#[derive(Debug)]
pub struct Runtime {
    /// The compiled configuration.
    pub config: Snapshot,
    /// Per-route state, index-aligned with `config.routes`.
    pub routes: Vec<RouteRuntime>,
    /// Per-pool selectors, index-aligned with `config.egress_pools`.
    pub egress: Vec<EgressSelector>,
    /// The rendered `/.well-known/egress-ips.json`.
    pub egress_document: Bytes,
    /// Secrets the snapshot references.
    pub secrets: SecretStore,
    /// When this runtime was built.
    pub loaded_at: SystemTime,
    /// Monotonic build time, for scheduling background work.
    pub built: Instant,
    /// sha256 of the admin bearer token, when one is configured.
    pub admin_token_sha256: Option<[u8; 32]>,
    /// What this build saw happen to each referenced secret (for the audit log).
    pub secret_changes: Vec<(String, String, FingerprintChange)>,
}

/// Process-wide things a runtime build reads from or registers with.
pub struct BuildContext<'a> {
    /// Where `${env:…}` and environment secrets come from.
    pub env: &'a dyn Environment,
    /// Key of the secret fingerprints.
    pub fingerprint_key: &'a [u8; 32],
    /// Metrics (per-route handles survive reloads).
    pub metrics: &'a Metrics,
    /// Secret usage records (survive reloads).
    pub usage: &'a SecretUsageRegistry,
}

/// Request-time state of one route.
pub struct RouteRuntime {
    /// Upstream selection over the resolved targets.
    pub upstream: LoadBalancer<RoundRobin>,
    /// Injected headers with every reference resolved; values are marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// References that could not be resolved: the route answers `secret_missing` while any is.
    pub missing: Vec<String>,
    /// CA bundle for upstream verification, when the route names one.
    pub ca: Option<CaBundle>,
    /// Request headers forwarded: the default safe list plus the route's `allowed_headers`.
    pub forward_headers: Vec<HeaderName>,
    /// Separates this route's pooled upstream connections from those of routes that trust other
    /// CAs or speak another protocol: Pingora's pool key covers neither.
    pub pool_salt: u64,
    /// Next time (ms since `Runtime::built`) a health check is due.
    pub next_health_check_ms: AtomicU64,
    /// The route's metrics.
    pub metrics: Arc<RouteMetrics>,
    /// Usage records of the secrets the route injects.
    pub secret_usage: Vec<Arc<SecretUsage>>,
}

/// Why a runtime could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A route's upstream trust could not be set up.
    #[error("route '{route}': {source}")]
    Upstream {
        /// The route.
        route: String,
        /// What failed.
        source: UpstreamError,
    },
    /// The admin token could not be read.
    #[error("admin token: {0}")]
    AdminToken(String),
}

/// Reads the admin token named by the config and keeps only its digest.
fn read_admin_token(
    config: &Snapshot,
    env: &dyn Environment,
) -> Result<Option<[u8; 32]>, BuildError> {
    use sha2::{Digest, Sha256};
    let token = if let Some(path) = &config.admin.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BuildError::AdminToken(format!("{}: {e}", path.display())))?;
        Some(text.trim_end_matches(['\r', '\n']).to_owned())
    } else if let Some(var) = &config.admin.token_env {
        Some(
            env.var(var)
                .ok_or_else(|| BuildError::AdminToken(format!("${var} is not set")))?,
        )
    } else {
        None
    };
    match token {
        Some(t) if t.is_empty() => Err(BuildError::AdminToken("the token is empty".into())),
        Some(t) => Ok(Some(Sha256::digest(t.as_bytes()).into())),
        None => Ok(None),
    }
}

// === impl RouteRuntime ===

impl std::fmt::Debug for RouteRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are sensitive: show names only.
        f.debug_struct("RouteRuntime")
            .field("backends", &self.upstream.backends().get_backend().len())
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("missing", &self.missing)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .finish_non_exhaustive()
    }
}

// === impl Runtime ===

impl Runtime {
    /// Builds the runtime for a snapshot: reads secrets, loads CA files, resolves targets.
    pub async fn build(config: Snapshot, cx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let env = cx.env;
        let fingerprint_key = cx.fingerprint_key;
        let admin_token_sha256 = read_admin_token(&config, env)?;
        let wanted: Vec<(String, String)> = config
            .routes
            .iter()
            .flat_map(|r| {
                let tenant = config.tenants[r.tenant].id.clone();
                r.secret_refs
                    .iter()
                    .map(move |s| (tenant.clone(), s.clone()))
            })
            .collect();
        let secrets = SecretStore::load(
            &config.secrets,
            env,
            wanted.iter().map(|(t, s)| (t.as_str(), s.as_str())),
            fingerprint_key,
        );
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let tenant = &config.tenants[route.tenant].id;
            let ca = match &route.ca_file {
                Some(path) => {
                    Some(load_ca_bundle(path).map_err(|source| BuildError::Upstream {
                        route: route.name.clone(),
                        source,
                    })?)
                }
                None => None,
            };
            let pool_salt = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for cert in ca.iter().flat_map(|c| c.iter()) {
                    cert.borrow_raw_cert().hash(&mut h);
                }
                route.upstream_http2.hash(&mut h);
                h.finish()
            };
            let mut headers = Vec::with_capacity(route.headers.len());
            let mut missing = Vec::new();
            for injected in &route.headers {
                let mut value = String::new();
                for part in injected.value.parts() {
                    match part {
                        TemplatePart::Literal(text) => value.push_str(text),
                        TemplatePart::Secret(name) => {
                            match secrets.get(tenant, name).and_then(|e| e.expose()) {
                                Some(v) => value.push_str(v),
                                None => missing.push(format!("secret:{name}")),
                            }
                        }
                        TemplatePart::Env(name) => match env.var(name) {
                            Some(v) => value.push_str(&v),
                            None => missing.push(format!("env:{name}")),
                        },
                    }
                }
                let name = injected.name.clone();
                match HeaderValue::from_str(&value) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        headers.push((name, v));
                    }
                    // Never echo the value: it may hold a secret.
                    Err(_) => missing.push(format!(
                        "header:{} (value is not a valid header value)",
                        injected.name
                    )),
                }
            }
            let forward_headers = route.forward_headers.clone();
            let upstream = build_load_balancer(route, ca.as_ref()).await;
            let secret_usage = route
                .secret_refs
                .iter()
                .map(|name| cx.usage.get(tenant, name))
                .collect();
            routes.push(RouteRuntime {
                upstream,
                headers,
                missing,
                ca,
                pool_salt,
                forward_headers,
                next_health_check_ms: AtomicU64::new(0),
                metrics: cx.metrics.route(tenant, &route.name),
                secret_usage,
            });
        }
        let mut secret_changes: Vec<(String, String, FingerprintChange)> = secrets
            .iter()
            .map(|((tenant, name), entry)| {
                let change = cx
                    .usage
                    .get(tenant, name)
                    .observe_fingerprint(entry.fingerprint.as_deref());
                (tenant.clone(), name.clone(), change)
            })
            .collect();
        secret_changes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let egress = config
            .egress_pools
            .iter()
            .map(EgressSelector::new)
            .collect();
        let egress_document = egress_document(&config.egress_pools);
        Ok(Self {
            config,
            routes,
            egress,
            egress_document,
            secrets,
            loaded_at: SystemTime::now(),
            built: Instant::now(),
            admin_token_sha256,
            secret_changes,
        })
    }

    /// Runs the health checks that are due; called by the background driver.
    pub async fn run_due_health_checks(&self) {
        let now_ms = self.built.elapsed().as_millis() as u64;
        for (route, rt) in self.config.routes.iter().zip(&self.routes) {
            if rt.upstream.health_check_frequency.is_none() {
                continue;
            }
            if rt.next_health_check_ms.load(Ordering::Relaxed) > now_ms {
                continue;
            }
            let interval = route.health_check.interval.as_millis() as u64;
            rt.next_health_check_ms
                .store(now_ms + interval, Ordering::Relaxed);
            rt.upstream.backends().run_health_check(true).await;
        }
    }

    /// Re-resolves every route's targets (DNS changes are picked up without a reload).
    pub async fn refresh_targets(&self) {
        for (route, rt) in self.config.routes.iter().zip(&self.routes) {
            if let Err(e) = rt.upstream.update().await {
                tracing::warn!(route = %route.name, error = %e, "target discovery failed; keeping the previous addresses");
            }
        }
    }
}
