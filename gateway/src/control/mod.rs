//! The live control plane: the state the proxy, the admin API and the background tasks share
//! ([`Shared`]), and the one reload function every trigger calls ([`Reloader`]).
//!
//! It sits below the process wiring (`app`) and the admin API, which both use it, so neither
//! has to import the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use portcullis_config::Snapshot;

use crate::observe::Recorders;
use crate::runtime::{Runtime, SharedRuntime};
use crate::secrets::SecretUsageRegistry;
use crate::upstream::tunnel::TunnelRegistry;

mod reload;

pub(crate) use self::reload::{ConfigSource, ListenOverrides, Reloader};

/// Everything shared by the proxy, the admin API and the background tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The current runtime snapshot.
    pub(crate) runtime: SharedRuntime,
    /// Metrics, audit log and traffic ring.
    pub(crate) recorders: Arc<Recorders>,
    /// Secret usage records.
    pub(crate) secret_usage: SecretUsageRegistry,
    /// Process start.
    pub(crate) started: SystemTime,
    /// Process start, monotonic.
    pub(crate) started_instant: Instant,
    /// The listeners bound at startup (they do not change on reload), with their real ports.
    pub(crate) listeners: portcullis_api::Listeners,
    /// The listener addresses as configured at startup (port 0 included), to tell whether a
    /// reloaded config asks for different ones.
    pub(crate) configured: ConfiguredListeners,
    /// The agents connected to this gateway's tunnels (they outlive reloads).
    pub(crate) tunnels: Arc<TunnelRegistry>,
}

/// Listener addresses as a config gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfiguredListeners {
    /// Plain HTTP listeners.
    pub(crate) http: Vec<SocketAddr>,
    /// TLS listeners.
    pub(crate) https: Vec<SocketAddr>,
    /// The admin API.
    pub(crate) admin: SocketAddr,
    /// The tunnel listener with all its settings (they apply at startup only).
    pub(crate) tunnel: Option<portcullis_config::TunnelListener>,
    /// TCP route listeners, by route name.
    pub(crate) tcp_routes: Vec<(String, SocketAddr)>,
}

// === impl Shared ===

impl Shared {
    /// Shared state around a first runtime.
    pub(crate) fn new(
        runtime: Runtime,
        recorders: Arc<Recorders>,
        secret_usage: SecretUsageRegistry,
        listeners: portcullis_api::Listeners,
        tunnels: Arc<TunnelRegistry>,
    ) -> Self {
        let configured = ConfiguredListeners::of(&runtime.config);
        Self {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            recorders,
            secret_usage,
            started: SystemTime::now(),
            started_instant: Instant::now(),
            listeners,
            configured,
            tunnels,
        }
    }
}

// === impl ConfiguredListeners ===

impl ConfiguredListeners {
    /// The listeners a config asks for.
    pub(crate) fn of(config: &Snapshot) -> Self {
        Self {
            http: config.server.listen.clone(),
            https: config.server.tls.iter().map(|t| t.listen).collect(),
            admin: config.server.admin_listen,
            tunnel: config.tunnel.clone(),
            tcp_routes: config
                .tcp_routes
                .iter()
                .map(|r| (r.name.clone(), r.listen))
                .collect(),
        }
    }
}
