//! The tunnel service: the listener agents dial, and the listeners of `[[tcp_routes]]`.
//!
//! Both kinds of socket are bound (or, in a graceful upgrade, taken over from the old process)
//! by `listener::bind_or_inherit` before Pingora starts (so their real ports are known and
//! reported, and a port that cannot be bound stops the start). This service runs them on the
//! proxy's Pingora runtime (`app::colocated`), so a tunnelled request's frames are handled by
//! the proxy's threads, not handed to others: accept, then one task per connection. An agent connection runs the
//! broker handshake against the token table of the runtime in force at that moment, and once
//! accepted lives in the [`TunnelRegistry`] until it ends.
//!
//! Graceful upgrade: at start the service puts a duplicate of each socket in Pingora's
//! listening-socket table (`listener::share`), which Pingora sends to the new process on
//! `SIGQUIT` with its own. When Pingora tells its services to stop (after the handover), this
//! service stops accepting — from then on only the new process accepts on those sockets — while
//! the connections already open carry on. The agents' connections are closed by the shutdown
//! order once the proxy has drained (`app::shutdown`), and the agents reconnect to the new
//! process.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use portcullis_broker::server::{self, ServerOptions};
use portcullis_config::TunnelListener;
use tokio::sync::Semaphore;

use super::tcp;
use super::tokens::Recording;
use super::TunnelRegistry;
use crate::observe::Recorders;
use crate::runtime::SharedRuntime;

/// Agent connections that may be in their handshake at once; more are closed at once, so a
/// flood of idle connections cannot hold the gateway's memory for a handshake timeout each.
const MAX_PENDING_HANDSHAKES: usize = 512;

/// The agent listener and the TCP route listeners, run as one Pingora service.
pub(crate) struct TunnelService {
    agents: Option<(OwnListener, ServerOptions)>,
    tcp_routes: Vec<(String, OwnListener)>,
    cx: Arc<Context>,
}

/// A listening socket this service accepts on itself (not through Pingora's listener), with
/// its key in the listening-socket table a graceful upgrade hands over.
#[derive(Debug)]
pub(crate) struct OwnListener {
    /// `Bound::table_key`: `tunnel:ADDR` or `tcp_route:ADDR`.
    pub(crate) key: String,
    /// The socket, non-blocking.
    pub(crate) socket: std::net::TcpListener,
}

/// What every connection task needs.
pub(super) struct Context {
    pub(super) runtime: SharedRuntime,
    pub(super) registry: Arc<TunnelRegistry>,
    pub(super) recorders: Arc<Recorders>,
}

// === impl TunnelService ===

impl TunnelService {
    /// A service over already-bound sockets: `agents` is the `[tunnel]` listener with its
    /// handshake settings, `tcp_routes` the listener of each TCP route by route name.
    pub(crate) fn new(
        agents: Option<(OwnListener, ServerOptions)>,
        tcp_routes: Vec<(String, OwnListener)>,
        runtime: SharedRuntime,
        registry: Arc<TunnelRegistry>,
        recorders: Arc<Recorders>,
    ) -> Self {
        Self {
            agents,
            tcp_routes,
            cx: Arc::new(Context {
                runtime,
                registry,
                recorders,
            }),
        }
    }
}

/// The broker's server options for a `[tunnel]` section; reads the certificate and key.
///
/// # Errors
///
/// The certificate or key cannot be read or do not match, with the file named.
pub(crate) fn server_options(config: &TunnelListener) -> Result<ServerOptions, String> {
    let mut options = match &config.tls {
        Some(tls) => ServerOptions::new(
            portcullis_broker::protocol::transport::server_config(&tls.cert, &tls.key)
                .map_err(|e| e.to_string())?,
        ),
        None => ServerOptions::insecure_plaintext(),
    };
    options.handshake_timeout = config.handshake_timeout;
    options.heartbeat_interval = config.heartbeat_interval;
    options.heartbeat_timeout = config.heartbeat_timeout;
    Ok(options)
}

#[async_trait]
impl Service for TunnelService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut accepting = Vec::new();
        if let Some((own, options)) = self.agents.take() {
            match prepare(own, fds.as_ref()) {
                Ok(listener) => accepting.push(tokio::spawn(accept_agents(
                    listener,
                    options,
                    Arc::clone(&self.cx),
                ))),
                Err(e) => tracing::error!(error = %e, "cannot use the tunnel listener socket"),
            }
        }
        for (name, own) in self.tcp_routes.drain(..) {
            match prepare(own, fds.as_ref()) {
                Ok(listener) => {
                    accepting.push(tokio::spawn(tcp::accept(
                        listener,
                        name,
                        Arc::clone(&self.cx),
                    )));
                }
                Err(e) => {
                    tracing::error!(route = %name, error = %e, "cannot use the TCP route socket")
                }
            }
        }
        // Pingora says stop after it has handed the sockets over (an upgrade) or at once
        // (SIGTERM): stop accepting, as its own listeners do, so that after a handover only the
        // new process accepts. Dropping the accept loops closes this process's descriptors; the
        // sockets stay open in Pingora's table (and in the new process). Connections already
        // accepted keep running through the drain.
        let _ = shutdown.changed().await;
        for task in &accepting {
            task.abort();
        }
        for task in accepting {
            let _ = task.await;
        }
        tracing::info!("the tunnel listener and the TCP routes stopped accepting");
    }

    fn name(&self) -> &str {
        "portcullis tunnels"
    }
}

/// Shares `own` with Pingora's listening-socket table (when there is one) so a graceful upgrade
/// hands it over, and makes it a tokio listener.
fn prepare(own: OwnListener, fds: Option<&ListenFds>) -> std::io::Result<tokio::net::TcpListener> {
    if let Some(fds) = fds {
        if let Err(e) = crate::listener::share(fds, own.key.clone(), &own.socket) {
            // Serving matters more: the socket is only missing from a future handover.
            tracing::error!(key = %own.key, error = %e, "cannot share the socket for a graceful upgrade: a new process could not take it over");
        }
    }
    tokio::net::TcpListener::from_std(own.socket)
}

/// Accepts agent connections until the task is stopped.
async fn accept_agents(
    listener: tokio::net::TcpListener,
    options: ServerOptions,
    cx: Arc<Context>,
) {
    let options = Arc::new(options);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "tunnel listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            tracing::warn!(%remote, "too many tunnel handshakes in progress; connection closed");
            cx.recorders
                .metrics
                .tunnels()
                .handshake_failed("overloaded");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (cx, options) = (Arc::clone(&cx), Arc::clone(&options));
        tokio::spawn(async move {
            serve_agent(tcp, remote, &options, &cx, permit).await;
        });
    }
}

/// Runs one agent connection: handshake, registration, and its end.
async fn serve_agent(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    options: &ServerOptions,
    cx: &Context,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let runtime = cx.runtime.load_full();
    let lookup = Recording::new(&runtime.tunnel_tokens);
    let result = server::accept(tcp, remote, &lookup, options).await;
    drop(permit);
    let session = match result {
        Ok(session) => session,
        Err(e) => {
            let reason = e.reason();
            cx.recorders.metrics.tunnels().handshake_failed(reason);
            match reason {
                "bad_token" | "revoked" | "version" | "malformed" => {
                    tracing::warn!(%remote, reason, "tunnel agent refused: {e}")
                }
                _ => tracing::info!(%remote, reason, "tunnel handshake failed: {e}"),
            }
            return;
        }
    };
    let Some(token) = lookup.accepted() else {
        // `accept` succeeds only after the lookup accepted a token.
        session.close(
            portcullis_broker::CloseReason::ProtocolError,
            "internal error: no token recorded",
        );
        return;
    };
    drop(runtime);
    cx.registry.register(&session, token);
    // A reload may have removed the token while this agent was handshaking.
    let current = cx.runtime.load_full();
    cx.registry.still_allowed(&session, &token, &current);
    drop(current);
    let (reason, message) = session.closed().await;
    cx.registry.unregister(&session, reason, &message);
}
