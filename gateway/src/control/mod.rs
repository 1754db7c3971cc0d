//! The live control plane: the state the proxy, the admin API and the background tasks share
//! ([`Shared`]), and the one reload function every trigger calls ([`Reloader`]).
//!
//! It sits below the process wiring (`app`) and the admin API, which both use it, so neither
//! has to import the other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    /// The settings only a restart (or an upgrade) applies, as configured at startup (port 0
    /// included), to tell which of them a reloaded config asks to change.
    pub(crate) configured: StartupSettings,
    /// The agents connected to this gateway's tunnels (they outlive reloads).
    pub(crate) tunnels: Arc<TunnelRegistry>,
}

/// The settings of a config that are read once, at startup: listener addresses and the
/// settings handed to Pingora or opened when the process starts. A reload cannot change them;
/// it reports which ones it was asked to change (`restart_required`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StartupSettings {
    /// Plain HTTP listeners.
    pub(crate) http: Vec<SocketAddr>,
    /// TLS listeners.
    pub(crate) https: Vec<SocketAddr>,
    /// The admin API.
    pub(crate) admin: SocketAddr,
    /// The tunnel listener with all its settings.
    pub(crate) tunnel: Option<portcullis_config::TunnelListener>,
    /// TCP route listeners, by route name.
    pub(crate) tcp_routes: Vec<(String, SocketAddr)>,
    /// The audit sink and its policy.
    pub(crate) audit: portcullis_config::Audit,
    /// `server.shutdown_grace_seconds` (Pingora's grace period).
    pub(crate) shutdown_grace: Duration,
    /// `server.upgrade_sock` (where Pingora sends the sockets on an upgrade).
    pub(crate) upgrade_sock: PathBuf,
    /// `server.h2_max_concurrent_streams` (Pingora's HTTP/2 settings).
    pub(crate) h2_max_concurrent_streams: u32,
    /// The HTTP/2 header-list limit (`server.max_request_header_bytes`).
    pub(crate) h2_max_header_list_bytes: usize,
    /// The HTTP/2 idle timeout (from `server.keepalive_timeout_ms`, or
    /// `request_header_timeout_ms` when keep-alive is off).
    pub(crate) h2_idle_timeout: Duration,
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
        let configured = StartupSettings::of(&runtime.config);
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

// === impl StartupSettings ===

impl StartupSettings {
    /// The startup settings a config asks for.
    pub(crate) fn of(config: &Snapshot) -> Self {
        let server = &config.server;
        Self {
            http: server.listen.clone(),
            https: server.tls.iter().map(|t| t.listen).collect(),
            admin: server.admin_listen,
            tunnel: config.tunnel.clone(),
            tcp_routes: config
                .tcp_routes
                .iter()
                .map(|r| (r.name.clone(), r.listen))
                .collect(),
            audit: config.audit.clone(),
            shutdown_grace: server.shutdown_grace,
            upgrade_sock: server.upgrade_sock.clone(),
            h2_max_concurrent_streams: server.h2_max_concurrent_streams,
            h2_max_header_list_bytes: server.max_request_header_bytes,
            h2_idle_timeout: server.h2_idle_timeout(),
        }
    }

    /// What in `wanted` differs from these settings, one line per setting, naming the keys.
    pub(crate) fn changes_in(&self, wanted: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let mut differs = |changed: bool, what: &str| {
            if changed {
                out.push(what.to_owned());
            }
        };
        differs(
            wanted.http != self.http || wanted.https != self.https,
            "server.listen / server.tls: listeners change only on restart (or a graceful upgrade)",
        );
        differs(
            wanted.admin != self.admin,
            "server.admin_listen: changes only on restart",
        );
        differs(
            wanted.tunnel != self.tunnel,
            "tunnel: the tunnel listener and its settings change only on restart",
        );
        differs(
            wanted.tcp_routes != self.tcp_routes,
            "tcp_routes: adding, removing, renaming or moving a TCP route's listener needs a restart",
        );
        differs(
            wanted.audit != self.audit,
            "audit: the audit sink changes only on restart",
        );
        differs(
            wanted.shutdown_grace != self.shutdown_grace,
            "server.shutdown_grace_seconds: read at start; a restart or an upgrade applies it",
        );
        differs(
            wanted.upgrade_sock != self.upgrade_sock,
            "server.upgrade_sock: read at start; a restart applies it (an upgrade still hands over on the old path)",
        );
        differs(
            wanted.h2_max_concurrent_streams != self.h2_max_concurrent_streams,
            "server.h2_max_concurrent_streams: HTTP/2 settings are read at start; a restart or an upgrade applies it",
        );
        differs(
            wanted.h2_max_header_list_bytes != self.h2_max_header_list_bytes,
            "server.max_request_header_bytes: applied to HTTP/1 now; the HTTP/2 header-list limit changes on restart or upgrade",
        );
        differs(
            wanted.h2_idle_timeout != self.h2_idle_timeout,
            "server.keepalive_timeout_ms / request_header_timeout_ms: applied to HTTP/1 now; the HTTP/2 idle timeout changes on restart or upgrade",
        );
        out
    }
}
