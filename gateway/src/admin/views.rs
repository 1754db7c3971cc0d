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
            tunnels: config.tunnels.len(),
            tunnels_online: config
                .tunnels
                .iter()
                .filter(|t| !shared.tunnels.view(&t.name).agents.is_empty())
                .count(),
        },
        audit: shared.recorders.audit.stats(),
    }
}

/// `GET /api/v1/routes`.
pub(super) fn routes(reloader: &Reloader) -> api::Routes {
    let shared = reloader.shared();
    let runtime = shared.runtime.load();
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
                upstream: match route.upstream.tunnel() {
                    Some(_) => api::UpstreamKind::Tunnel,
                    None => api::UpstreamKind::Saas,
                },
                tunnel: route
                    .upstream
                    .tunnel()
                    .map(|t| runtime.config.tunnels[t].name.clone()),
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
                upstreams: match (&state.upstream, route.upstream.tunnel()) {
                    (Some(group), _) => group
                        .backends()
                        .into_iter()
                        .map(|(address, healthy)| api::UpstreamHealth {
                            address: address.to_string(),
                            healthy,
                        })
                        .collect(),
                    // A tunnel route's "upstreams" are the agents it can use right now.
                    (None, Some(t)) => shared
                        .tunnels
                        .view(&runtime.config.tunnels[t].name)
                        .agents
                        .iter()
                        .map(|a| api::UpstreamHealth {
                            address: format!("agent {} ({})", a.info().agent_id, a.info().remote),
                            healthy: true,
                        })
                        .collect(),
                    (None, None) => Vec::new(),
                },
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

/// `GET /api/v1/tunnels`: every configured tunnel with the agents connected to this gateway.
pub(super) fn tunnels(reloader: &Reloader) -> api::Tunnels {
    let shared = reloader.shared();
    let runtime = shared.runtime.load();
    let config = &runtime.config;
    let tunnels = config
        .tunnels
        .iter()
        .enumerate()
        .map(|(index, tunnel)| {
            let view = shared.tunnels.view(&tunnel.name);
            let state = if !view.agents.is_empty() {
                api::TunnelState::Online
            } else if view.reconnecting {
                api::TunnelState::Reconnecting
            } else {
                api::TunnelState::Offline
            };
            let mut agents: Vec<api::AgentStatus> = view
                .agents
                .iter()
                .map(|session| {
                    let info = session.info();
                    let stats = session.stats();
                    api::AgentStatus {
                        id: info.agent_id.clone(),
                        version: info.agent_version.clone(),
                        remote_addr: info.remote.to_string(),
                        connected_since_ms: unix_ms(info.connected_at),
                        open_streams: stats.open_streams,
                        bytes_to_agent: stats.bytes_to_agent,
                        bytes_from_agent: stats.bytes_from_agent,
                        last_heartbeat_ms: stats.last_heartbeat.map_or(0, unix_ms),
                    }
                })
                .collect();
            agents
                .sort_by(|a, b| (&a.id, a.connected_since_ms).cmp(&(&b.id, b.connected_since_ms)));
            api::TunnelStatus {
                name: tunnel.name.clone(),
                tenant: config.tenants[tunnel.tenant].id.clone(),
                state,
                routes: config
                    .routes_using_tunnel(index)
                    .map(|r| r.name.clone())
                    .chain(
                        config
                            .tcp_routes
                            .iter()
                            .filter(|r| r.tunnel == index)
                            .map(|r| r.name.clone()),
                    )
                    .collect(),
                agents,
            }
        })
        .collect();
    api::Tunnels { tunnels }
}
