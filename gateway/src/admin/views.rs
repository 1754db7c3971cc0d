//! The admin API's responses, built from the live state into the `portcullis-api` types the
//! console decodes. Status only: never a secret value or a header value.

use std::time::Instant;

use portcullis_api as api;

use crate::clock::unix_ms;
use crate::control::Reloader;
use crate::runtime::AuthRuntime;
use crate::secrets::SecretSource;

/// `GET /api/v1/status`.
pub(super) fn status(reloader: &Reloader) -> api::Status {
    let shared = reloader.shared();
    let runtime = shared.runtime.load();
    let config = &runtime.config;
    let now = std::time::SystemTime::now();
    let missing = runtime
        .secrets
        .iter()
        .filter(|(_, e)| !e.is_present() || e.expires.is_some_and(|at| at <= now))
        .count();
    api::Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        started_at_ms: unix_ms(shared.started),
        uptime_seconds: shared.started_instant.elapsed().as_secs_f64(),
        listeners: shared.listeners.clone(),
        config: api::ConfigInfo {
            hash: config.hash.clone(),
            source: reloader.source().path().map_or_else(
                || config.source_path.display().to_string(),
                |p| p.display().to_string(),
            ),
            loaded_at_ms: unix_ms(runtime.loaded_at),
        },
        last_reload: (*reloader.status()).clone(),
        egress_pools: config
            .egress_pools
            .iter()
            .map(|p| api::EgressPool {
                name: p.name.clone(),
                addresses: p.addresses.clone(),
                upcoming: p.upcoming.clone(),
                retiring: p.retiring.clone(),
            })
            .collect(),
        counts: api::Counts {
            tenants: config.tenants.len(),
            routes: config.routes.len(),
            secrets: runtime.secrets.len(),
            secrets_missing: missing,
            requests: shared.recorders.traffic.last_seq(),
            active_requests: shared.recorders.metrics.active_requests().get(),
            tunnels: 0,
            tunnels_online: 0,
        },
        audit: shared.recorders.audit.stats(),
    }
}

/// `GET /api/v1/routes`.
pub(super) fn routes(reloader: &Reloader) -> api::Routes {
    let runtime = reloader.shared().runtime.load();
    let now = Instant::now();
    let routes = runtime
        .config
        .routes
        .iter()
        .zip(&runtime.routes)
        .enumerate()
        .map(|(index, (route, state))| {
            let spec = runtime.config.table.get(portcullis_routes::RouteId(index));
            api::RouteStatus {
                name: route.name.clone(),
                tenant: state.tenant.to_string(),
                host: spec.map(|s| s.host.to_string()),
                path: route.path_prefix.as_str().to_owned(),
                methods: route.methods.to_string(),
                public: route.public,
                auth: match route.auth {
                    portcullis_config::RouteAuth::Inject => api::AuthMode::Inject,
                    portcullis_config::RouteAuth::Passthrough(_) => api::AuthMode::Passthrough,
                    portcullis_config::RouteAuth::Exchange(_) => api::AuthMode::Exchange,
                },
                upstream: api::UpstreamKind::Saas,
                tunnel: None,
                targets: route
                    .upstream
                    .targets()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                egress_pool: route
                    .egress_pool
                    .map(|i| runtime.config.egress_pools[i].name.clone()),
                secrets_missing: state.injected.missing.clone(),
                stats: state.metrics.window(now),
                upstreams: state
                    .upstream
                    .backends()
                    .into_iter()
                    .map(|(address, healthy)| api::UpstreamHealth {
                        address: address.to_string(),
                        healthy,
                    })
                    .collect(),
            }
        })
        .collect();
    api::Routes { routes }
}

/// `GET /api/v1/secrets`.
pub(super) fn secrets(reloader: &Reloader) -> api::Secrets {
    let shared = reloader.shared();
    let runtime = shared.runtime.load();
    let mut secrets: Vec<api::SecretStatus> = runtime
        .secrets
        .iter()
        .map(|((tenant, name), entry)| {
            let usage = shared.secret_usage.lookup(tenant, name);
            let (source, location) = match &entry.source {
                SecretSource::File(p) => (
                    api::SecretSourceKind::File,
                    api::SecretLocation::Found(p.display().to_string()),
                ),
                SecretSource::Env(v) => (
                    api::SecretSourceKind::Env,
                    api::SecretLocation::Found(v.clone()),
                ),
                SecretSource::Store(at) | SecretSource::Undecryptable(at) => (
                    api::SecretSourceKind::Store,
                    api::SecretLocation::Found(at.clone()),
                ),
                SecretSource::Missing(looked) => (
                    api::SecretSourceKind::None,
                    api::SecretLocation::Searched(looked.clone()),
                ),
            };
            let expired = entry
                .expires
                .is_some_and(|at| at <= std::time::SystemTime::now());
            api::SecretStatus {
                tenant: tenant.clone(),
                name: name.clone(),
                status: match (entry.is_present(), expired) {
                    (false, _) if entry.is_undecryptable() => api::SecretState::Undecryptable,
                    (false, _) => api::SecretState::Missing,
                    (true, true) => api::SecretState::Expired,
                    (true, false) => api::SecretState::Present,
                },
                source,
                location,
                fingerprint: entry.fingerprint.clone(),
                loaded_at_ms: unix_ms(entry.loaded_at),
                rotated_at_ms: usage.as_ref().and_then(|u| u.rotated_ms()),
                expires_at_ms: entry.expires.map(unix_ms),
                last_used_at_ms: usage.as_ref().map(|u| u.last_used_ms()).filter(|t| *t > 0),
                use_count: usage.as_ref().map_or(0, |u| u.use_count()),
                last_upstream_auth_failure: usage
                    .as_ref()
                    .and_then(|u| u.last_auth_failure())
                    .map(|(at_ms, status)| api::AuthFailure { at_ms, status }),
                routes: runtime
                    .config
                    .routes_using_secret(tenant, name)
                    .map(|r| r.name.clone())
                    .collect(),
            }
        })
        .collect();
    secrets.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    let exchanges = runtime
        .config
        .routes
        .iter()
        .zip(&runtime.routes)
        .filter_map(|(route, state)| {
            let AuthRuntime::Exchange(exchange) = &state.auth else {
                return None;
            };
            let snapshot = exchange.as_ref().map(|e| e.snapshot());
            Some(api::ExchangeStatus {
                tenant: state.tenant.to_string(),
                route: route.name.clone(),
                token_cached_until_ms: snapshot.as_ref().and_then(|s| s.cached_until_ms),
                last_exchange_at_ms: snapshot.as_ref().and_then(|s| s.last_exchange_ms),
                exchanges: snapshot.as_ref().map_or(0, |s| s.exchanges),
                last_error: match &snapshot {
                    Some(s) => s.last_error.clone(),
                    None => Some(format!(
                        "not exchanging: missing {}",
                        state.injected.missing.join(", ")
                    )),
                },
            })
        })
        .collect();
    api::Secrets { secrets, exchanges }
}
