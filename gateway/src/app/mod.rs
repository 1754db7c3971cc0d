//! Process wiring: load the config, build the first runtime, bind the listeners, open the
//! audit log, assemble the Pingora server (proxy, admin API, reload triggers, upstream driver),
//! run it, and stop it in order ([`shutdown`]).
//!
//! Everything that can be wrong with a config is found before anything runs, and reported
//! all at once: config errors, files the runtime needs, addresses that cannot be bound.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{background_service, Opt, Server};
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;
use pingora::services::ServiceWithDependents;
use portcullis_api::AuditPolicy;
use portcullis_config::{LoadError, Snapshot};

use crate::admin::AdminApi;
use crate::conn::{ConnStats, ConnectionLimiter, Guarded, Listener};
use crate::control::{ConfigSource, ListenOverrides, Reloader, Shared};
use crate::listener::{self, BindError, Bound, InheritError, Inherited, PreBound, Role};
use crate::observe::audit::{AuditConfig, AuditLog, AuditWriter};
use crate::observe::metrics::Metrics;
use crate::observe::traffic::{TrafficRing, DEFAULT_TRAFFIC_CAPACITY};
use crate::observe::Recorders;
use crate::proxy::Gateway;
use crate::runtime::{BuildContext, BuildError, Runtime};
use crate::secrets::{Environment, FingerprintKey, SecretUsageRegistry};
use crate::upstream::tunnel::listener::{server_options, OwnListener, TunnelService};
use crate::upstream::tunnel::TunnelRegistry;

mod background;
mod colocated;
mod nofile;
mod shutdown;
mod triggers;

/// How a gateway process runs, besides its config.
pub(crate) struct ServeOptions {
    /// Worker threads of the proxy service.
    pub(crate) threads: usize,
    /// Take the listening sockets over from the running gateway (`run --upgrade`).
    pub(crate) upgrade: bool,
    /// Where to write the bound listener addresses once every listener is bound.
    pub(crate) ready_file: Option<PathBuf>,
    /// Values dropped just before the process exits (log writers that flush on drop).
    pub(crate) flush_on_exit: Vec<Box<dyn Send>>,
    /// Called once every listener is bound, with their real addresses (the demo's banner).
    pub(crate) on_ready: Option<OnReady>,
}

/// What to do once every listener is bound.
pub(crate) type OnReady = Box<dyn FnOnce(&portcullis_api::Listeners)>;

/// Extra services the caller runs in the same server (the demo's upstreams, each on a socket
/// bound before the config is generated, and its traffic generator).
pub(crate) type ExtraService = Box<dyn ServiceWithDependents>;

/// Why the gateway did not start. Each variant lists every problem of its kind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The config could not be read or is invalid.
    #[error("invalid config, not starting:\n{0}")]
    Config(LoadError),
    /// Files or settings the runtime needs are wrong.
    #[error("{}", list("cannot build the runtime", .0))]
    Build(Vec<BuildError>),
    /// Listeners could not be bound.
    #[error("{}", list("cannot listen", .0))]
    Bind(Vec<BindError>),
    /// A graceful upgrade could not receive the running gateway's sockets.
    #[error("graceful upgrade: {0}")]
    Inherit(InheritError),
    /// The audit log could not be opened.
    #[error("cannot open the audit log: {0}")]
    Audit(std::io::Error),
    /// Anything else about setting up the process.
    #[error("{0}")]
    Setup(String),
}

// === impl ServeOptions ===

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            upgrade: false,
            ready_file: None,
            flush_on_exit: Vec::new(),
            on_ready: None,
        }
    }
}

/// Runs the gateway until it is told to stop; returns only if it could not start.
pub(crate) fn serve(
    source: ConfigSource,
    env: Arc<dyn Environment>,
    overrides: ListenOverrides,
    options: ServeOptions,
    extra: Vec<ExtraService>,
) -> Result<std::convert::Infallible, StartError> {
    let mut snapshot = source.load().map_err(StartError::Config)?;
    overrides.apply(&mut snapshot);
    let fingerprint_key = FingerprintKey::random();
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let usage = SecretUsageRegistry::default();
    let built = Runtime::build(
        snapshot,
        &BuildContext {
            env: env.as_ref(),
            fingerprint_key: &fingerprint_key,
            metrics: &metrics,
            usage: &usage,
            previous: None,
        },
    )
    .map_err(StartError::Build)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup(format!("starting the setup runtime: {e}")))?
        .block_on(async {
            // Installed now, before the gateway reports itself ready: a SIGHUP that arrives
            // before the reload task runs must not kill the process (the default action).
            if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                tracing::error!(error = %e, "cannot handle SIGHUP");
            }
            built.resolve().await;
        });
    let runtime = built.runtime;
    for (route, state) in runtime.config.routes.iter().zip(&runtime.routes) {
        if !state.injected.missing.is_empty() {
            tracing::warn!(route = %route.name, missing = ?state.injected.missing, "route will answer 503 secret_missing until its references resolve");
        }
    }
    nofile::raise_and_check(runtime.config.server.max_connections);
    warn_about_grace(&runtime.config);

    let tunnel_options = match &runtime.config.tunnel {
        Some(t) => Some(server_options(t).map_err(|reason| {
            StartError::Build(vec![BuildError::TlsListener {
                listen: format!("tunnel.listen {}", t.listen),
                reason,
            }])
        })?),
        None => None,
    };
    let mut inherited = if options.upgrade {
        let path = &runtime.config.server.upgrade_sock;
        tracing::info!(upgrade_sock = %path.display(), "waiting for the running gateway's listening sockets (send it SIGQUIT)");
        Some(Inherited::receive(path).map_err(StartError::Inherit)?)
    } else {
        None
    };
    let listeners = bind_listeners(&runtime.config, inherited.as_mut())?;
    let sockets = listeners.count();
    if sockets > listener::MAX_HANDED_OVER {
        tracing::warn!(
            sockets,
            max = listener::MAX_HANDED_OVER,
            "more listening sockets than a graceful upgrade can hand over; upgrade by restarting instead"
        );
    }
    if let Some(inherited) = inherited {
        inherited.close_unclaimed();
    }
    let (audit, audit_writer) = open_audit(&runtime.config)?;
    let tunnels = Arc::new(TunnelRegistry::new(
        runtime
            .config
            .tunnel
            .as_ref()
            .map_or(portcullis_config::DEFAULT_TUNNEL_RECONNECT_GRACE, |t| {
                t.reconnect_grace
            }),
        Arc::clone(&metrics),
        audit.clone(),
    ));
    if listeners.tunnel.as_ref().is_some_and(Bound::is_inherited) {
        // The agents are connected to the process being replaced (whose tunnel listener this
        // is); they come here when it stops. Until then requests for their tunnels wait for
        // them rather than fail.
        let config = &runtime.config;
        tunnels.expect_agents(
            config
                .tunnels
                .iter()
                .map(|t| (t.name.as_str(), config.tenants[t.tenant].id.as_str())),
        );
    }
    let recorders = Arc::new(Recorders {
        metrics,
        audit,
        traffic: TrafficRing::new(DEFAULT_TRAFFIC_CAPACITY),
        stopping: AtomicBool::new(false),
    });
    let hash = runtime.config.short_hash().to_owned();
    let shared = Arc::new(Shared::new(
        runtime,
        Arc::clone(&recorders),
        usage,
        listeners.report.clone(),
        tunnels,
    ));
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&shared),
        source,
        overrides,
        env,
        fingerprint_key,
    ));
    let conn_stats = Arc::new(ConnStats::default());
    let mut options = options;
    let server = build_server(
        &shared,
        reloader,
        listeners,
        tunnel_options,
        &conn_stats,
        &options,
        extra,
    )?;
    if let Some(on_ready) = options.on_ready.take() {
        on_ready(&shared.listeners);
    }
    if let Some(path) = &options.ready_file {
        listener::write_ready_file(path, &shared.listeners)
            .map_err(|e| StartError::Setup(format!("writing {}: {e}", path.display())))?;
    }
    tracing::info!(config = %hash, listeners = ?shared.listeners, "portcullis started");
    run(server, &shared, conn_stats, audit_writer, options)
}

/// The sockets of every listener, bound, and the addresses to report.
struct BoundListeners {
    http: Vec<Bound>,
    https: Vec<(Bound, PathBuf, PathBuf)>,
    admin: Bound,
    /// The listener agents dial.
    tunnel: Option<Bound>,
    /// The listener of each TCP route, by route name.
    tcp_routes: Vec<(String, Bound)>,
    report: portcullis_api::Listeners,
}

// === impl BoundListeners ===

impl BoundListeners {
    /// How many listening sockets there are.
    fn count(&self) -> usize {
        self.http.len()
            + self.https.len()
            + 1
            + usize::from(self.tunnel.is_some())
            + self.tcp_routes.len()
    }
}

/// Binds (or takes over, in an upgrade) every listener of the config, reporting every address
/// that cannot be bound.
fn bind_listeners(
    config: &Snapshot,
    mut inherited: Option<&mut Inherited>,
) -> Result<BoundListeners, StartError> {
    let mut errors = Vec::new();
    let mut bind = |addr, what, role| match listener::bind_or_inherit(
        addr,
        what,
        role,
        inherited.as_deref_mut(),
    ) {
        Ok(bound) => Some(bound),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let http: Vec<Bound> = config
        .server
        .listen
        .iter()
        .filter_map(|a| bind(*a, "server.listen", Role::Pingora))
        .collect();
    let https: Vec<(Bound, PathBuf, PathBuf)> = config
        .server
        .tls
        .iter()
        .filter_map(|t| {
            bind(t.listen, "server.tls", Role::Pingora).map(|b| (b, t.cert.clone(), t.key.clone()))
        })
        .collect();
    let admin = bind(
        config.server.admin_listen,
        "server.admin_listen",
        Role::Pingora,
    );
    let tunnel = config
        .tunnel
        .as_ref()
        .and_then(|t| bind(t.listen, "tunnel.listen", Role::Tunnel));
    let tcp_routes: Vec<(String, Bound)> = config
        .tcp_routes
        .iter()
        .filter_map(|r| {
            bind(r.listen, "tcp_routes.listen", Role::TcpRoute).map(|b| (r.name.clone(), b))
        })
        .collect();
    match admin {
        Some(admin) if errors.is_empty() => {
            let report = portcullis_api::Listeners {
                http: http.iter().map(|b| b.addr).collect(),
                https: https.iter().map(|(b, _, _)| b.addr).collect(),
                admin: admin.addr,
                tunnel: tunnel.as_ref().map(|b| b.addr),
                tcp_routes: tcp_routes
                    .iter()
                    .map(|(name, b)| portcullis_api::TcpRouteListener {
                        name: name.clone(),
                        addr: b.addr,
                    })
                    .collect(),
            };
            Ok(BoundListeners {
                http,
                https,
                admin,
                tunnel,
                tcp_routes,
                report,
            })
        }
        _ => Err(StartError::Bind(errors)),
    }
}

fn open_audit(config: &Snapshot) -> Result<(AuditLog, AuditWriter), StartError> {
    AuditLog::open(AuditConfig {
        sink: config.audit.sink.clone(),
        queue_capacity: config.audit.queue,
        policy: if config.audit.fail_closed {
            AuditPolicy::FailClosed
        } else {
            AuditPolicy::Drop
        },
    })
    .map_err(StartError::Audit)
}

/// Assembles the Pingora server: the proxy on its listeners, the admin API, the reload
/// triggers, the upstream driver, and the caller's extra services.
fn build_server(
    shared: &Arc<Shared>,
    reloader: Arc<Reloader>,
    listeners: BoundListeners,
    tunnel_options: Option<portcullis_broker::ServerOptions>,
    conn_stats: &Arc<ConnStats>,
    options: &ServeOptions,
    extra: Vec<ExtraService>,
) -> Result<Server, StartError> {
    let config = shared.runtime.load_full();
    let server_config = &config.config.server;
    let conf = ServerConf {
        threads: options.threads.max(1),
        // Pingora waits out the whole grace period before it drops the tasks still running
        // (their requests are recorded as cut); the orchestrator exits as soon as nothing is
        // left, so an idle gateway does not wait at all.
        grace_period_seconds: Some(server_config.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: server_config.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Gateway::new(
            Arc::clone(&shared.runtime),
            Arc::clone(&shared.recorders),
            Arc::clone(&shared.tunnels),
        ),
    );
    proxy.server_options = Some(http_server_options(server_config));
    proxy.h2_options = Some(h2_options(server_config));
    let connections = shared.recorders.metrics.connections();
    let limiter = ConnectionLimiter::new(
        Listener::Public,
        Arc::clone(&shared.runtime),
        Arc::clone(conn_stats),
        connections.clone(),
    );
    let mut proxy = pingora::services::listening::Service::new(
        "portcullis proxy".to_owned(),
        Guarded::new(
            Arc::new(proxy),
            limiter.clone(),
            Arc::clone(conn_stats),
            Arc::clone(&shared.runtime),
            connections.clone(),
        ),
    );
    // Limits before TLS: in the accept loop, then (TLS listeners) before the handshake.
    proxy.set_connection_filter(Arc::new(limiter.clone()));
    proxy.endpoints().set_pre_tls_callback(Arc::new(limiter));
    let mut bound = Vec::new();
    for b in listeners.http {
        proxy.add_tcp(&b.pingora_addr());
        bound.push(b);
    }
    for (b, cert, key) in listeners.https {
        let tls_error = |reason: String| {
            StartError::Build(vec![BuildError::TlsListener {
                listen: b.addr.to_string(),
                reason,
            }])
        };
        let (Some(cert), Some(key)) = (cert.to_str(), key.to_str()) else {
            return Err(tls_error("cert and key paths must be UTF-8".into()));
        };
        let mut settings =
            TlsSettings::intermediate(cert, key).map_err(|e| tls_error(e.to_string()))?;
        settings.enable_h2();
        proxy.add_tls_with_settings(&b.pingora_addr(), None, settings);
        bound.push(b);
    }
    let proxy = PreBound::new(proxy, bound);

    // The admin listener has its own connection cap and the same head deadline: loopback by
    // default, but a local process must not be able to hold it (or the console out of it).
    let admin_stats = Arc::new(ConnStats::default());
    let admin_connections = shared.recorders.metrics.admin_connections();
    let admin_limiter = ConnectionLimiter::new(
        Listener::Admin,
        Arc::clone(&shared.runtime),
        Arc::clone(&admin_stats),
        admin_connections.clone(),
    );
    let mut admin = pingora::services::listening::Service::new(
        "portcullis admin".to_owned(),
        Guarded::new(
            Arc::new(AdminApi::new(Arc::clone(&reloader))),
            admin_limiter.clone(),
            admin_stats,
            Arc::clone(&shared.runtime),
            admin_connections.clone(),
        ),
    );
    admin.set_connection_filter(Arc::new(admin_limiter));
    admin.add_tcp(&listeners.admin.pingora_addr());
    server.add_service(PreBound::new(admin, [listeners.admin]));

    let own = |b: Bound| {
        let (addr, key) = (b.addr, b.table_key());
        b.into_std()
            .map(|socket| OwnListener { key, socket })
            .map_err(|e| StartError::Setup(format!("listening socket {addr}: {e}")))
    };
    let agents = match listeners.tunnel.zip(tunnel_options) {
        Some((b, options)) => Some((own(b)?, options)),
        None => None,
    };
    let tcp_routes = listeners
        .tcp_routes
        .into_iter()
        .map(|(name, b)| own(b).map(|s| (name, s)))
        .collect::<Result<Vec<_>, _>>()?;
    if agents.is_some() || !tcp_routes.is_empty() {
        // On the proxy's runtime: a tunnelled request's frames then never cross threads.
        let tunnels = TunnelService::new(
            agents,
            tcp_routes,
            Arc::clone(&shared.runtime),
            Arc::clone(&shared.tunnels),
            Arc::clone(&shared.recorders),
        );
        server.add_service(colocated::Colocated::new(proxy, tunnels));
    } else {
        server.add_service(proxy);
    }

    server.add_service(background_service(
        "upstream discovery and health",
        background::UpstreamDriver::new(Arc::clone(&shared.runtime)),
    ));
    // Created here, before the ready file is written: the file watch is already running.
    server.add_service(background_service(
        "reload triggers",
        triggers::ReloadTriggers::new(reloader),
    ));
    for service in extra {
        server.add_boxed_service(service);
    }
    Ok(server)
}

/// HTTP/1 options of the proxy. CONNECT is let through to the filters, which refuse it with
/// a JSON 405 and an access line (Pingora's own refusal is a bare 405 nobody records).
fn http_server_options(server: &portcullis_config::Server) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = true;
    // An HTTP/2 connection with no stream open is closed like an idle keep-alive connection.
    // With keep-alive off (zero) it still gets a bound, the head deadline: Pingora reads `None`
    // as "never", which would let a silent HTTP/2 connection (or a PING flood) stay forever.
    options.h2_idle_timeout = Some(server.h2_idle_timeout());
    options
}

/// HTTP/2 limits: Pingora's bounded defaults, with the configured stream and header limits.
fn h2_options(server: &portcullis_config::Server) -> H2Options {
    let mut options = default_h2_options();
    options.max_concurrent_streams(server.h2_max_concurrent_streams);
    options
        .max_header_list_size(u32::try_from(server.max_request_header_bytes).unwrap_or(u32::MAX));
    options
}

/// Warns about routes whose total timeout is longer than the grace period: a request that
/// uses all of it during a stop is cut.
fn warn_about_grace(config: &Snapshot) {
    let grace = config.server.shutdown_grace;
    let longer: Vec<&str> = config
        .routes
        .iter()
        .filter(|r| r.timeouts.total > grace)
        .map(|r| r.name.as_str())
        .collect();
    if !longer.is_empty() {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            routes = ?longer,
            "these routes' total timeout is longer than server.shutdown_grace_seconds: their longest requests are cut by a graceful stop or upgrade"
        );
    }
}

/// Starts the audit writer and the shutdown orchestrator, then runs Pingora on this thread.
fn run(
    server: Server,
    shared: &Shared,
    conn_stats: Arc<ConnStats>,
    audit_writer: AuditWriter,
    options: ServeOptions,
) -> Result<std::convert::Infallible, StartError> {
    let (stop_audit, stop_rx) = tokio::sync::watch::channel(false);
    let writer = std::thread::Builder::new()
        .name("audit writer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(audit_writer.run(stop_rx)),
                Err(e) => tracing::error!(error = %e, "cannot start the audit writer"),
            }
        })
        .map_err(|e| StartError::Setup(format!("starting the audit writer: {e}")))?;
    let (events_tx, events) = std::sync::mpsc::channel();
    let orchestrator = shutdown::Orchestrator {
        events,
        phases: server.watch_execution_phase(),
        recorders: Arc::clone(&shared.recorders),
        connections: conn_stats,
        tunnels: Arc::clone(&shared.tunnels),
        pingora_done: false,
        grace: shared.runtime.load().config.server.shutdown_grace,
        stop_audit,
        audit_writer: Some(writer),
        flush_on_exit: options.flush_on_exit,
    };
    std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || orchestrator.run())
        .map_err(|e| StartError::Setup(format!("starting the shutdown orchestrator: {e}")))?;
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown::SignalWatch {
            notify: events_tx.clone(),
        }),
    });
    let _ = events_tx.send(shutdown::Event::PingoraEnded);
    // The orchestrator exits the process.
    loop {
        std::thread::park();
    }
}

/// `title:` and one problem per line.
fn list<T: std::fmt::Display>(title: &str, items: &[T]) -> String {
    let mut out = format!("{title}:");
    for item in items {
        out.push_str("\n  ");
        out.push_str(&item.to_string());
    }
    out
}
