//! The customer side: `portcullis-agent` keeps a tunnel to every gateway it is given and serves
//! the streams the gateways open, under its own rules.
//!
//! - One reconnect loop per gateway *address*: each `gateways` entry is resolved, and every
//!   address it resolves to gets its own connection (re-resolved every 30 s), so every gateway
//!   instance behind a name can serve the tunnel. Through a proxy the name is passed to the
//!   proxy instead, one connection per entry.
//! - Reconnects wait a jittered exponential delay (`[backoff]`, equal jitter: half the delay
//!   fixed, half random), reset after every accepted handshake. Refusals (bad or revoked
//!   token, version) back off the same way and are logged as errors with the gateway's reason.
//! - Each `http` stream is served as HTTP/1.1 ([`http`]); each `tcp` stream is piped to its
//!   origin; every request and connection is written to the audit log ([`audit`]).
//! - Stopping the agent sends a go-away on every connection and closes them: the tunnel is
//!   gone.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::protocol::client::{self, ClientHandshakeError};
use crate::protocol::frame::{
    read_frame, Accepted, CloseReason, Frame, Hello, StreamKind, PROTOCOL_VERSION,
};
use crate::protocol::mux::{self, Heartbeat, Shared, TunnelStream};
use crate::protocol::proxy::ProxyConfig;
use crate::protocol::transport::{self, Dial, Transport, TransportError};

pub mod audit;
pub mod config;
pub mod http;

pub use config::AgentConfig;

use audit::AuditLog;
use config::{BackoffConfig, GatewayAddr, TransportChoice};

/// How often gateway names are resolved again to find new instances.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// Deadline for the handshake answer and for each stream's header.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for TCP, proxy, TLS and WebSocket setup.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping may take before connections are dropped without a go-away.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The audit log could not be opened.
    #[error("cannot open audit log {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The origin TLS settings were rejected.
    #[error("origin TLS settings rejected: {0}")]
    Tls(#[from] rustls::Error),
}

/// Everything a connection needs, shared by all of them.
struct Context {
    config: Arc<AgentConfig>,
    audit: AuditLog,
    handler: Arc<http::Handler>,
}

/// One place to connect to.
#[derive(Debug, Clone)]
struct Target {
    gateway: GatewayAddr,
    addr: Option<SocketAddr>,
    proxy: Option<ProxyConfig>,
}

/// Jittered exponential backoff.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

/// How one connection attempt ended.
enum Outcome {
    /// The session ran and then ended.
    Ended(CloseReason, String),
    /// The gateway refused the tunnel.
    Refused(ClientHandshakeError),
    /// No session: transport or handshake failure.
    Failed(String),
    /// The agent is stopping.
    Stopped,
}

/// Runs the agent until `shutdown` resolves, then closes every tunnel connection.
///
/// # Errors
///
/// [`AgentError`] when the audit log cannot be opened.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let (audit, audit_task) = match &config.audit {
        Some(path) => AuditLog::open(path)
            .await
            .map_err(|source| AgentError::Audit {
                path: path.display().to_string(),
                source,
            })?,
        None => {
            tracing::warn!("no audit file configured: requests are not audited");
            AuditLog::disabled()
        }
    };
    let config = Arc::new(config);
    let cx = Arc::new(Context {
        handler: Arc::new(http::Handler::new(config.clone(), audit.clone())?),
        config: config.clone(),
        audit,
    });
    tracing::info!(
        agent_id = %config.agent_id,
        version = crate::VERSION,
        gateways = config.gateways.len(),
        origins = config.origins.len(),
        "portcullis-agent starting"
    );
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for gateway in &config.gateways {
        tasks.spawn(supervise(gateway.clone(), cx.clone(), stop.clone()));
    }
    shutdown.await;
    tracing::info!("stopping: closing every tunnel connection");
    stop.cancel();
    if tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
    drop(cx);
    if let Some(task) = audit_task {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Keeps one connection loop per address of one `gateways` entry.
async fn supervise(gateway: GatewayAddr, cx: Arc<Context>, stop: CancellationToken) {
    let proxy = match cx.config.proxy.clone() {
        Some(proxy) if !no_proxy_from_env().matches(&gateway.host) => Some(proxy),
        Some(_) => None,
        None => match ProxyConfig::from_env(&gateway.host) {
            Ok(proxy) => proxy,
            Err(e) => {
                tracing::error!(gateway = %gateway.host, "ignoring HTTPS_PROXY: {e}");
                None
            }
        },
    };
    let mut loops: HashMap<Option<SocketAddr>, CancellationToken> = HashMap::new();
    let mut tasks = JoinSet::new();
    let literal = gateway.host.parse::<IpAddr>().ok();
    if proxy.is_some() || literal.is_some() {
        let addr = literal
            .map(|ip| SocketAddr::new(ip, gateway.port))
            .filter(|_| proxy.is_none());
        let target = Target {
            gateway,
            addr,
            proxy,
        };
        connection_loop(target, cx, stop).await;
        return;
    }
    let mut failures = Backoff::new(cx.config.backoff);
    loop {
        let wait = match tokio::net::lookup_host((gateway.host.as_str(), gateway.port)).await {
            Ok(addrs) => {
                failures.reset();
                let addrs: Vec<SocketAddr> = addrs.collect();
                loops.retain(|addr, token| {
                    let keep = addr.is_some_and(|a| addrs.contains(&a));
                    if !keep {
                        tracing::info!(gateway = %gateway.host, address = ?addr, "address no longer resolves; closing its connection");
                        token.cancel();
                    }
                    keep
                });
                for addr in addrs {
                    if let std::collections::hash_map::Entry::Vacant(slot) = loops.entry(Some(addr))
                    {
                        let token = stop.child_token();
                        slot.insert(token.clone());
                        let target = Target {
                            gateway: gateway.clone(),
                            addr: Some(addr),
                            proxy: None,
                        };
                        tasks.spawn(connection_loop(target, cx.clone(), token));
                    }
                }
                RESOLVE_EVERY
            }
            Err(e) => {
                let delay = failures.next_delay();
                tracing::warn!(gateway = %gateway.host, retry_in_ms = delay.as_millis() as u64, "cannot resolve gateway: {e}");
                if loops.is_empty() {
                    delay
                } else {
                    RESOLVE_EVERY
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn no_proxy_from_env() -> crate::protocol::proxy::NoProxy {
    let value = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    crate::protocol::proxy::NoProxy::parse(&value)
}

/// Connects, serves until the connection ends, waits, and again — until stopped.
async fn connection_loop(target: Target, cx: Arc<Context>, stop: CancellationToken) {
    let mut backoff = Backoff::new(cx.config.backoff);
    let label = match target.addr {
        Some(addr) if addr.ip().to_string() != target.gateway.host => {
            format!(
                "{} ({addr})",
                transport::host_port(&target.gateway.host, target.gateway.port)
            )
        }
        _ => transport::host_port(&target.gateway.host, target.gateway.port),
    };
    loop {
        match connect_once(&target, &label, &cx, &stop).await {
            Outcome::Stopped => return,
            Outcome::Ended(reason, message) => {
                backoff.reset();
                tracing::warn!(gateway = %label, reason = %reason, "tunnel disconnected: {message}");
            }
            Outcome::Refused(e) => {
                tracing::error!(gateway = %label, "{e}");
            }
            Outcome::Failed(message) => {
                tracing::warn!(gateway = %label, "cannot connect: {message}");
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let delay = backoff.next_delay();
        tracing::info!(gateway = %label, retry_in_ms = delay.as_millis() as u64, "reconnecting after backoff");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn connect_once(
    target: &Target,
    label: &str,
    cx: &Arc<Context>,
    stop: &CancellationToken,
) -> Outcome {
    let config = &cx.config;
    let transports: &[Transport] = match config.transport {
        TransportChoice::Tls => &[Transport::Binary],
        TransportChoice::WebSocket => &[Transport::WebSocket],
        TransportChoice::Auto => &[Transport::Binary, Transport::WebSocket],
    };
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        token: config.token.clone(),
        agent_id: config.agent_id.clone(),
        agent_version: crate::VERSION.to_owned(),
    };
    let mut last_error = String::new();
    for &transport in transports {
        let dial = Dial {
            host: target.gateway.host.clone(),
            port: target.gateway.port,
            addr: target.addr,
            transport,
            tls: config.gateway_tls.clone(),
            proxy: target.proxy.clone(),
            timeout: DIAL_TIMEOUT,
        };
        let attempt = async {
            let mut io = transport::dial(&dial).await?;
            let accepted = client::handshake(&mut io, &hello, HANDSHAKE_TIMEOUT).await;
            Ok::<_, TransportError>((io, accepted))
        };
        let result = tokio::select! {
            r = attempt => r,
            () = stop.cancelled() => return Outcome::Stopped,
        };
        match result {
            Ok((io, Ok(accepted))) => {
                return run_session(io, accepted, transport, label, cx, stop).await;
            }
            Ok((_, Err(e @ ClientHandshakeError::Refused { .. }))) => return Outcome::Refused(e),
            Ok((_, Err(e))) => {
                last_error = format!("{transport:?} transport: handshake failed: {e}")
            }
            Err(e) => last_error = format!("{transport:?} transport: {e}"),
        }
    }
    Outcome::Failed(last_error)
}

async fn run_session(
    io: transport::BoxIo,
    accepted: Accepted,
    transport: Transport,
    label: &str,
    cx: &Arc<Context>,
    stop: &CancellationToken,
) -> Outcome {
    let (shared, goaway_rx) = Shared::new("gateway");
    let own = cx.config.heartbeat;
    let gateway_interval = Duration::from_millis(accepted.heartbeat_interval_ms.max(1));
    let heartbeat = Heartbeat {
        interval: own.interval.min(gateway_interval),
        // Never declare the gateway dead before it has had two chances to ping.
        timeout: own.timeout.max(gateway_interval * 2),
    };
    tracing::info!(
        gateway = %label,
        tunnel = %accepted.tunnel,
        tenant = %accepted.tenant,
        transport = ?transport,
        "tunnel connected"
    );
    cx.audit
        .connection("connect", label, &accepted, transport, None);
    let gateway: Arc<str> = Arc::from(label);
    let on_inbound = {
        let shared = shared.clone();
        let cx = cx.clone();
        let mut goaway_rx = Some(goaway_rx);
        move |stream: yamux::Stream| {
            // The gateway opens the control stream first, before any other.
            if let Some(goaway_rx) = goaway_rx.take() {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut control = TunnelStream::new_control(stream, shared.clone());
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut control)).await {
                        Ok(Ok(Frame::Open(StreamKind::Control))) => {
                            mux::run_control(control, shared, heartbeat, goaway_rx).await;
                        }
                        _ => shared.abort(
                            CloseReason::ProtocolError,
                            "the first stream was not the control stream",
                        ),
                    }
                });
            } else {
                let stream = TunnelStream::new(stream, shared.clone());
                tokio::spawn(serve_stream(stream, cx.clone(), gateway.clone()));
            }
        }
    };
    let _open_tx = mux::spawn(
        io,
        yamux::Mode::Client,
        shared.clone(),
        heartbeat,
        on_inbound,
    );
    let stopped = tokio::select! {
        () = shared.closed() => false,
        () = stop.cancelled() => {
            shared.close(CloseReason::Shutdown, "the agent is stopping");
            shared.closed().await;
            true
        }
    };
    let (reason, message) = shared
        .reason()
        .cloned()
        .unwrap_or((CloseReason::ConnectionLost, "connection ended".into()));
    cx.audit.connection(
        "disconnect",
        label,
        &accepted,
        transport,
        Some((reason, &message)),
    );
    if stopped {
        Outcome::Stopped
    } else {
        Outcome::Ended(reason, message)
    }
}

/// Reads a stream's header and hands it to the HTTP or TCP handler.
async fn serve_stream(mut stream: TunnelStream, cx: Arc<Context>, gateway: Arc<str>) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut stream)).await {
        Ok(Ok(Frame::Open(StreamKind::Http))) => http::serve(stream, cx.handler.clone()).await,
        Ok(Ok(Frame::Open(StreamKind::Tcp { origin }))) => {
            http::serve_tcp(stream, &origin, &cx.handler, &gateway).await;
        }
        Ok(Ok(other)) => {
            tracing::warn!(gateway = %gateway, "stream started with an unexpected {} frame; reset", other.name());
        }
        Ok(Err(e)) => tracing::warn!(gateway = %gateway, "bad stream header: {e}; reset"),
        Err(_) => {
            tracing::warn!(gateway = %gateway, "no stream header within {HANDSHAKE_TIMEOUT:?}; reset")
        }
    }
}

// === impl Backoff ===

impl Backoff {
    /// Starts at `config.initial`.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// The next delay: `min(initial * 2^n, max)`, of which the upper half is random.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self
            .config
            .initial
            .saturating_mul(factor)
            .min(self.config.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }

    /// Back to the initial delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let config = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut backoff = Backoff::new(config);
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, c) in delays.iter().zip(ceilings) {
            assert!(*d >= c / 2 && *d <= c, "{delays:?}");
        }
        for w in delays[..4].windows(2) {
            assert!(w[1] >= w[0], "{delays:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
