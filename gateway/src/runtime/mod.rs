//! The runtime snapshot: a compiled config plus everything the request path needs that the pure
//! config crate cannot hold — resolved secrets as ready-made sensitive header values, upstream
//! groups, CA bundles, egress selectors and the published egress document.
//!
//! It is built whole, off the request path, and published with a single `ArcSwap::store`:
//! one snapshot, one swap. A request loads it once and keeps it to the end. Building reports
//! every problem at once (a missing admin token file, a CA file that is not PEM, a TLS key that
//! cannot be read …), so `portcullis check` — which builds a runtime without resolving DNS or
//! binding anything — fails exactly where `portcullis run` would.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use portcullis_config::{Endpoint, KeyDigests, Route, RouteAuth, RouteUpstream, Snapshot};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::observe::metrics::{Metrics, RouteMetrics};
use crate::secrets::store::StoreError;
use crate::secrets::{
    Environment, FingerprintChange, FingerprintKey, SecretStore, SecretUsage, SecretUsageRegistry,
};
use crate::tokens::exchange::ExchangeState;
use crate::tokens::jwks::{JwksCache, JwksSettings};
use crate::tokens::jwt::JwtPolicy;
use crate::upstream::egress::{egress_document, EgressSelector};
use crate::upstream::fetch::FetchTarget;
use crate::upstream::tunnel::TunnelTokens;
use crate::upstream::{
    load_ca_bundle, CaBundle, CaFileError, GroupKey, UpstreamGroup, UpstreamGroupSpec,
    UpstreamGroups,
};

mod credentials;

pub(crate) use self::credentials::InjectedHeaders;

/// The longest a JWKS or token request of the gateway's own may take (less if the route's
/// total timeout is shorter).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The live runtime, shared by the proxy, the admin API and the background tasks.
pub(crate) type SharedRuntime = Arc<ArcSwap<Runtime>>;

/// Everything one configuration version needs at request time.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// The compiled configuration.
    pub(crate) config: Snapshot,
    /// Per-route state, index-aligned with `config.routes`.
    pub(crate) routes: Vec<RouteRuntime>,
    /// The upstream groups the routes use (shared with earlier runtimes where unchanged).
    pub(crate) groups: UpstreamGroups,
    /// Per-pool selectors, index-aligned with `config.egress_pools`.
    pub(crate) egress: Vec<EgressSelector>,
    /// The rendered `/.well-known/egress-ips.json`.
    pub(crate) egress_document: Bytes,
    /// Secrets the snapshot references.
    pub(crate) secrets: SecretStore,
    /// When this runtime was built.
    pub(crate) loaded_at: SystemTime,
    /// The digest of the admin bearer token, when one is configured.
    pub(crate) admin_token: Option<KeyDigests>,
    /// What this build saw happen to each referenced secret (for the audit log).
    pub(crate) secret_changes: Vec<(String, String, FingerprintChange)>,
    /// Which tunnel each broker token opens (swapped with the rest of the runtime).
    pub(crate) tunnel_tokens: TunnelTokens,
}

/// A runtime and the upstream groups it created, which still need their DNS resolution
/// ([`Built::resolve`]) before the runtime is published.
pub(crate) struct Built {
    /// The runtime.
    pub(crate) runtime: Runtime,
    /// Groups no earlier runtime had.
    pub(crate) new_groups: Vec<Arc<UpstreamGroup>>,
}

/// Process-wide things a runtime build reads from or registers with.
pub(crate) struct BuildContext<'a> {
    /// Where `${env:…}` and environment secrets come from.
    pub(crate) env: &'a dyn Environment,
    /// Key of the secret fingerprints.
    pub(crate) fingerprint_key: &'a FingerprintKey,
    /// Metrics (per-route handles survive reloads).
    pub(crate) metrics: &'a Metrics,
    /// Secret usage records (survive reloads).
    pub(crate) usage: &'a SecretUsageRegistry,
    /// The runtime being replaced, whose unchanged upstream groups are carried over.
    pub(crate) previous: Option<&'a Runtime>,
}

/// Request-time state of one route.
pub(crate) struct RouteRuntime {
    /// The route's name, shared with every record of its requests.
    pub(crate) name: Arc<str>,
    /// The route's tenant, likewise.
    pub(crate) tenant: Arc<str>,
    /// Upstream selection over the resolved targets; `None` for tunnel routes, which reach
    /// an agent origin by name and have no addresses to resolve or health-check.
    pub(crate) upstream: Option<Arc<UpstreamGroup>>,
    /// Injected headers with every reference resolved.
    pub(crate) injected: InjectedHeaders,
    /// CA bundle for upstream verification, when the route names one.
    pub(crate) ca: Option<CaBundle>,
    /// Separates this route's pooled upstream connections from those of routes that trust other
    /// CAs or speak another protocol: Pingora's pool key covers neither.
    pub(crate) pool_salt: u64,
    /// The route's metrics.
    pub(crate) metrics: Arc<RouteMetrics>,
    /// Usage records of the secrets the route injects.
    pub(crate) secret_usage: Vec<Arc<SecretUsage>>,
    /// How the route authenticates upstream, with its token state.
    pub(crate) auth: AuthRuntime,
}

/// The request-time state of a route's auth mode.
pub(crate) enum AuthRuntime {
    /// `auth = "inject"`: everything is in `injected`.
    Inject,
    /// `auth = "passthrough"`.
    Passthrough {
        /// The key cache and checks, unless the route is `opaque`.
        jwt: Option<(Arc<JwksCache>, JwtPolicy)>,
    },
    /// `auth = "exchange"`; `None` while a referenced secret is missing (the route answers 503
    /// `secret_missing` then).
    Exchange(Option<Arc<ExchangeState>>),
}

/// Why a runtime could not be built from a valid config. Messages name the file or key and
/// never carry a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// A route's CA bundle could not be loaded.
    #[error("route '{route}': {error}")]
    CaFile {
        /// The route.
        route: String,
        /// What failed.
        error: CaFileError,
    },
    /// The admin token could not be read.
    #[error("admin token: {0}")]
    AdminToken(String),
    /// The encrypted secret store could not be opened (no or wrong master key, unreadable,
    /// altered): no runtime is built from it, so a running gateway keeps its previous one.
    #[error("{0}")]
    SecretStore(StoreError),
    /// A TLS listener's certificate or key could not be read.
    #[error("TLS listener {listen}: {reason}")]
    TlsListener {
        /// The listener.
        listen: String,
        /// What was wrong.
        reason: String,
    },
}

// === impl Runtime ===

impl Runtime {
    /// Builds the runtime for a snapshot: reads secrets, CA files, the admin token and the TLS
    /// listeners' files, and sets up upstream groups — without resolving DNS (new groups are
    /// returned unresolved). Every problem is reported.
    pub(crate) fn build(config: Snapshot, cx: &BuildContext<'_>) -> Result<Built, Vec<BuildError>> {
        let mut errors = Vec::new();
        let admin_token = read_admin_token(&config, cx.env).unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        for tls in &config.server.tls {
            if let Err(reason) = check_tls_files(&tls.cert, &tls.key) {
                errors.push(BuildError::TlsListener {
                    listen: tls.listen.to_string(),
                    reason,
                });
            }
        }
        if let Some((tunnel, tls)) = config
            .tunnel
            .as_ref()
            .and_then(|t| t.tls.as_ref().map(|tls| (t, tls)))
        {
            if let Err(reason) = check_tls_files(&tls.cert, &tls.key) {
                errors.push(BuildError::TlsListener {
                    listen: format!("tunnel.listen {}", tunnel.listen),
                    reason,
                });
            }
        }
        let secret_refs = config.secret_refs();
        let secrets = SecretStore::load(
            &config.secrets,
            cx.env,
            secret_refs.iter().copied(),
            cx.fingerprint_key,
        )
        .unwrap_or_else(|e| {
            // Carry on without secrets so that every other problem is reported too.
            errors.push(BuildError::SecretStore(e));
            SecretStore::default()
        });
        let usage = cx.usage.resolve(secret_refs.iter().copied());
        let route_metrics = cx.metrics.resolve_routes(
            config
                .routes
                .iter()
                .map(|r| (config.tenants[r.tenant].id.as_str(), r.name.as_str())),
        );

        let previous_routes: HashMap<(&str, &str), &RouteRuntime> = cx
            .previous
            .map(|p| {
                p.routes
                    .iter()
                    .map(|r| ((&*r.tenant, &*r.name), r))
                    .collect()
            })
            .unwrap_or_default();
        let mut groups = UpstreamGroups::default();
        let mut new_groups = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (route, metrics) in config.routes.iter().zip(route_metrics) {
            let tenant = config.tenants[route.tenant].id.as_str();
            let ca = match &route.ca_file {
                Some(path) => match load_ca_bundle(path) {
                    Ok(ca) => Some(ca),
                    Err(error) => {
                        errors.push(BuildError::CaFile {
                            route: route.name.clone(),
                            error,
                        });
                        continue;
                    }
                },
                None => None,
            };
            let pool_salt = {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for cert in ca.iter().flat_map(|c| c.iter()) {
                    cert.borrow_raw_cert().hash(&mut h);
                }
                route.upstream_http2.hash(&mut h);
                h.finish()
            };
            let upstream = match &route.upstream {
                RouteUpstream::Tunnel { .. } => None,
                RouteUpstream::Saas { targets } => {
                    let key =
                        GroupKey::new(targets, &route.health_check, route.tls_verify, ca.as_ref());
                    Some(groups.get_or_create(
                        key,
                        cx.previous.map(|p| &p.groups),
                        &mut new_groups,
                        UpstreamGroupSpec {
                            targets,
                            health: &route.health_check,
                            tls_verify: route.tls_verify,
                            ca: ca.as_ref(),
                        },
                    ))
                }
            };
            let mut injected = InjectedHeaders::resolve(&route.headers, tenant, &secrets, cx.env);
            let auth = AuthSpec {
                route,
                tenant,
                config: &config,
                ca: ca.as_ref(),
                pool_salt,
                metrics: &metrics,
                previous: previous_routes.get(&(tenant, route.name.as_str())).copied(),
            }
            .build(&secrets, cx.env, &mut injected.missing);
            let secret_usage = route
                .secret_refs
                .iter()
                .filter_map(|name| usage.get(&(tenant.to_owned(), name.clone())).cloned())
                .collect();
            routes.push(RouteRuntime {
                name: Arc::from(route.name.as_str()),
                tenant: Arc::from(tenant),
                upstream,
                injected,
                ca,
                pool_salt,
                metrics,
                secret_usage,
                auth,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut secret_changes: Vec<(String, String, FingerprintChange)> = secrets
            .iter()
            .filter_map(|((tenant, name), entry)| {
                let usage = usage.get(&(tenant.clone(), name.clone()))?;
                let change = usage.observe_fingerprint(entry.fingerprint.as_deref());
                Some((tenant.clone(), name.clone(), change))
            })
            .collect();
        secret_changes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let egress = config
            .egress_pools
            .iter()
            .map(EgressSelector::new)
            .collect();
        let egress_document = egress_document(&config.egress_pools);
        let tunnel_tokens = TunnelTokens::new(&config);
        Ok(Built {
            runtime: Self {
                config,
                routes,
                groups,
                egress,
                egress_document,
                secrets,
                loaded_at: SystemTime::now(),
                admin_token,
                secret_changes,
                tunnel_tokens,
            },
            new_groups,
        })
    }

    /// Runs the health checks that are due; called by the background driver.
    pub(crate) async fn run_due_health_checks(&self) {
        for group in self.groups.iter() {
            group.check_health_if_due().await;
        }
    }

    /// Starts fetching the key set of every passthrough route that has none yet (in the
    /// background; called by the driver once the server runs, so neither startup nor a reload
    /// waits for an identity provider).
    pub(crate) fn warm_key_sets(&self) {
        for route in &self.routes {
            if let AuthRuntime::Passthrough {
                jwt: Some((cache, _)),
            } = &route.auth
            {
                cache.warm_in_background();
            }
        }
    }

    /// Re-resolves every group's targets (DNS changes are picked up without a reload).
    pub(crate) async fn refresh_targets(&self) {
        for group in self.groups.iter() {
            group.resolve().await;
        }
    }
}

// === impl Built ===

impl Built {
    /// Resolves the targets of the groups this build created (those carried over are resolved
    /// already), concurrently.
    pub(crate) async fn resolve(&self) {
        futures_util::future::join_all(self.new_groups.iter().map(|g| g.resolve())).await;
    }
}

// === impl RouteRuntime ===

impl std::fmt::Debug for RouteRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRuntime")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("injected", &self.injected)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// What a route's auth state is built from.
struct AuthSpec<'a> {
    route: &'a Route,
    tenant: &'a str,
    config: &'a Snapshot,
    ca: Option<&'a CaBundle>,
    pool_salt: u64,
    metrics: &'a Arc<RouteMetrics>,
    /// The same route in the runtime being replaced, whose token state is carried over when
    /// nothing it depends on changed.
    previous: Option<&'a RouteRuntime>,
}

// === impl AuthSpec ===

impl AuthSpec<'_> {
    fn build(
        &self,
        secrets: &SecretStore,
        env: &dyn Environment,
        missing: &mut Vec<String>,
    ) -> AuthRuntime {
        let previous = self.previous.map(|p| &p.auth);
        match &self.route.auth {
            RouteAuth::Inject => AuthRuntime::Inject,
            RouteAuth::Passthrough(p) => {
                let Some(jwt) = &p.jwt else {
                    return AuthRuntime::Passthrough { jwt: None };
                };
                let identity = self.identity(&format!("{jwt:?}"), &[]);
                let carried = match previous {
                    Some(AuthRuntime::Passthrough {
                        jwt: Some((cache, _)),
                    }) if cache.identity == identity => Some(Arc::clone(cache)),
                    _ => None,
                };
                let cache = carried.unwrap_or_else(|| {
                    Arc::new(JwksCache::new(
                        identity,
                        self.fetch_target(&jwt.jwks_url),
                        JwksSettings {
                            refresh: jwt.jwks_refresh,
                            grace: jwt.jwks_grace,
                            min_refetch: jwt.jwks_min_refetch,
                        },
                        Arc::clone(self.metrics),
                    ))
                });
                AuthRuntime::Passthrough {
                    jwt: Some((cache, JwtPolicy::new(jwt))),
                }
            }
            RouteAuth::Exchange(exchange) => {
                let Some(resolved) = credentials::exchange_secrets(
                    &exchange.kind,
                    self.tenant,
                    secrets,
                    env,
                    missing,
                ) else {
                    return AuthRuntime::Exchange(None);
                };
                // A rotated secret gets a new token, not the one the old secret obtained.
                let fingerprints: Vec<Option<&str>> = self
                    .route
                    .secret_refs
                    .iter()
                    .map(|name| {
                        secrets
                            .get(self.tenant, name)
                            .and_then(|e| e.fingerprint.as_deref())
                    })
                    .collect();
                let identity = self.identity(&format!("{exchange:?}"), &fingerprints);
                let state = match previous {
                    Some(AuthRuntime::Exchange(Some(state))) if state.identity == identity => {
                        Arc::clone(state)
                    }
                    _ => Arc::new(ExchangeState::new(
                        identity,
                        exchange.clone(),
                        resolved,
                        self.fetch_target(exchange.kind.endpoint()),
                        Arc::clone(self.metrics),
                    )),
                };
                AuthRuntime::Exchange(Some(state))
            }
        }
    }

    /// How the route's own requests to `endpoint` go: its guard, egress, CA and timeouts.
    fn fetch_target(&self, endpoint: &Endpoint) -> FetchTarget {
        let route = self.route;
        FetchTarget {
            endpoint: endpoint.clone(),
            guard: route.destinations.clone(),
            egress: route
                .egress_pool
                .map(|i| EgressSelector::new(&self.config.egress_pools[i])),
            ca: self.ca.cloned(),
            connect_timeout: route.timeouts.connect,
            timeout: route.timeouts.total.min(FETCH_TIMEOUT),
        }
    }

    /// Everything a token state depends on, hashed: the auth settings, the destination guard,
    /// the egress addresses, the trust (CA), and the fingerprints of the secrets it sends.
    fn identity(&self, settings: &str, fingerprints: &[Option<&str>]) -> u64 {
        let route = self.route;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        settings.hash(&mut h);
        format!("{:?}", route.destinations).hash(&mut h);
        route
            .egress_pool
            .map(|i| &self.config.egress_pools[i].addresses)
            .hash(&mut h);
        self.pool_salt.hash(&mut h);
        self.ca.is_some().hash(&mut h);
        fingerprints.hash(&mut h);
        (route.timeouts.connect, route.timeouts.total).hash(&mut h);
        h.finish()
    }
}

// === impl AuthRuntime ===

impl std::fmt::Debug for AuthRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthRuntime::Inject => f.write_str("Inject"),
            AuthRuntime::Passthrough { jwt } => f
                .debug_struct("Passthrough")
                .field("jwks", &jwt.as_ref().map(|(cache, _)| cache))
                .finish(),
            AuthRuntime::Exchange(state) => f.debug_tuple("Exchange").field(state).finish(),
        }
    }
}

/// Reads the admin token named by the config and keeps only its digest.
fn read_admin_token(
    config: &Snapshot,
    env: &dyn Environment,
) -> Result<Option<KeyDigests>, BuildError> {
    let token = if let Some(path) = &config.admin.token_file {
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| BuildError::AdminToken(format!("{}: {e}", path.display())))?;
        Some(Zeroizing::new(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    } else if let Some(var) = &config.admin.token_env {
        let value = env
            .var(var)
            .ok_or_else(|| BuildError::AdminToken(format!("${var} is not set")))?;
        Some(Zeroizing::new(value))
    } else {
        None
    };
    match token {
        Some(t) if t.is_empty() => Err(BuildError::AdminToken("the token is empty".into())),
        Some(t) => Ok(Some(KeyDigests::of_key(t.as_bytes()))),
        None => Ok(None),
    }
}

/// Checks that a TLS listener's certificate chain and private key can be read and parsed.
fn check_tls_files(cert: &Path, key: &Path) -> Result<(), String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cert '{}': {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert '{}': not a PEM certificate: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("cert '{}': no certificate found", cert.display()));
    }
    PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "key '{}': not a readable PEM private key: {e}",
            key.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::secrets::{FingerprintKey, SecretUsageRegistry};

    /// A runtime for unit tests: the config with no tenant and no route, its `[server]`
    /// section changed by `edit`.
    pub(crate) fn runtime_with_server(
        edit: impl FnOnce(&mut portcullis_config::Server),
    ) -> SharedRuntime {
        let mut snapshot = portcullis_config::compile(Path::new("test.toml"), "")
            .expect("the empty config is valid");
        edit(&mut snapshot.server);
        let env: HashMap<String, String> = HashMap::new();
        let metrics = Metrics::new("test");
        let built = Runtime::build(
            snapshot,
            &BuildContext {
                env: &env,
                fingerprint_key: &FingerprintKey::random(),
                metrics: &metrics,
                usage: &SecretUsageRegistry::default(),
                previous: None,
            },
        )
        .expect("a runtime without routes builds");
        Arc::new(ArcSwap::from_pointee(built.runtime))
    }
}
