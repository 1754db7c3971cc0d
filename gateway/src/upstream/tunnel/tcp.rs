//! `[[tcp_routes]]`: a gateway port whose connections are piped, byte for byte, through a
//! tunnel to one of the agent's `tcp` origins (a database, an SSH bastion, …).
//!
//! For each connection, in order: the route (looked up by name in the runtime in force, so a
//! reload changes its CIDRs, tunnel and origin for new connections) → the caller's address
//! against the route's `caller_cidrs`, before a single byte is read → an agent of the tunnel →
//! a `tcp` stream to the origin, which the agent accepts only after it has connected to the
//! origin under its own rules → both directions copied until each side closes. Every
//! connection, accepted or not, leaves one `tcp_connection` line in the audit log.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_broker::StreamKind;
use tokio::net::{TcpListener, TcpStream};

use super::listener::Context;
use super::Pick;
use crate::observe::audit::AdminRecord;

/// How long the agent gets to connect to the origin and say so.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How one TCP route connection ended, for the audit line and the metric.
struct Outcome {
    result: &'static str,
    detail: Option<String>,
    agent: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
}

/// Accepts the connections of TCP route `name` until the task is stopped.
pub(super) async fn accept(listener: TcpListener, name: String, cx: Arc<Context>) {
    let name: Arc<str> = Arc::from(name);
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(route = %name, error = %e, "TCP route: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (cx, name) = (Arc::clone(&cx), Arc::clone(&name));
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = serve(client, peer, &name, &cx).await;
            record(&cx, &name, peer, started, outcome);
        });
    }
}

/// Serves one connection; returns how it ended.
async fn serve(mut client: TcpStream, peer: SocketAddr, name: &str, cx: &Context) -> Outcome {
    let runtime = cx.runtime.load_full();
    let fail = |result, detail: String| Outcome {
        result,
        detail: Some(detail),
        agent: None,
        bytes_in: 0,
        bytes_out: 0,
    };
    let Some(route) = runtime.config.tcp_routes.iter().find(|r| r.name == name) else {
        return fail("removed", "the TCP route is no longer configured".into());
    };
    if !route.caller_cidrs.contains(canonical(peer.ip())) {
        return fail("caller_denied", "the caller is outside caller_cidrs".into());
    }
    let tunnel = &runtime.config.tunnels[route.tunnel];
    let tenant = runtime.config.tenants[tunnel.tenant].id.as_str();
    // Just after a graceful upgrade the agents are on their way from the old process: wait.
    let limit = Instant::now() + OPEN_TIMEOUT;
    let session = match cx.registry.pick_waiting(&tunnel.name, tenant, limit).await {
        Pick::Agent(session) => session,
        Pick::Offline => return fail("tunnel_offline", "no agent is connected".into()),
        Pick::Reconnecting { .. } => {
            return fail(
                "tunnel_reconnecting",
                "the tunnel's agents are reconnecting".into(),
            )
        }
    };
    let agent = session.info().agent_id.clone();
    let kind = StreamKind::Tcp {
        origin: route.origin.clone(),
    };
    drop(runtime);
    let mut stream = match tokio::time::timeout(OPEN_TIMEOUT, session.open_stream(kind)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let mut outcome = fail("agent_refused", e.to_string());
            outcome.agent = Some(agent);
            return outcome;
        }
        Err(_) => {
            let mut outcome = fail(
                "timeout",
                "the agent did not open the stream in time".into(),
            );
            outcome.agent = Some(agent);
            return outcome;
        }
    };
    let _ = client.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut stream).await {
        Ok((bytes_in, bytes_out)) => Outcome {
            result: "closed",
            detail: None,
            agent: Some(agent),
            bytes_in,
            bytes_out,
        },
        Err(e) => Outcome {
            result: "error",
            detail: Some(e.to_string()),
            agent: Some(agent),
            bytes_in: 0,
            bytes_out: 0,
        },
    }
}

/// An IPv4 address arriving as IPv4-mapped IPv6 (a dual-stack listener) is checked as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Writes the connection's audit line, log line and metric.
fn record(cx: &Context, name: &str, peer: SocketAddr, started: Instant, outcome: Outcome) {
    let duration = started.elapsed();
    cx.recorders
        .metrics
        .tunnels()
        .tcp_connection(name, outcome.result);
    match outcome.result {
        "closed" => tracing::info!(
            route = %name,
            client = %peer,
            agent = outcome.agent.as_deref().unwrap_or(""),
            bytes_in = outcome.bytes_in,
            bytes_out = outcome.bytes_out,
            duration_ms = duration.as_millis() as u64,
            "TCP route connection closed"
        ),
        result => tracing::warn!(
            route = %name,
            client = %peer,
            result,
            "TCP route connection refused or failed: {}",
            outcome.detail.as_deref().unwrap_or("")
        ),
    }
    cx.recorders.audit.record_admin(AdminRecord::new(
        "tcp_connection",
        outcome.result,
        serde_json::json!({
            "route": name,
            "client_ip": peer.ip().to_string(),
            "agent_id": outcome.agent,
            "detail": outcome.detail,
            "bytes_in": outcome.bytes_in,
            "bytes_out": outcome.bytes_out,
            "duration_ms": duration.as_secs_f64() * 1000.0,
        }),
    ));
}
