//! The peer a request is sent to. A SaaS route's is a target chosen round-robin among the
//! healthy ones, checked by the destination guard on its resolved address, reached from the
//! tenant's egress address, in a connection-pool group of its own. A tunnel route's is a stream
//! on one of the tunnel's agents, opened by the tunnel connector; with no agent the request is
//! answered at once (502 `tunnel_offline`, or 503 `tunnel_reconnecting` within the grace) —
//! except just after a graceful upgrade, when the agents are on their way from the old process
//! and the request waits for one (within the grace and its own total timeout).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::connectors::l4::BindTo;
use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::outcome::ErrorCode;
use crate::upstream::tunnel::connector::TunnelConnector;
use crate::upstream::tunnel::{Pick, TunnelRegistry};
use crate::upstream::Picked;

/// Chooses and configures the peer for the next connection attempt.
pub(super) fn saas_peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let rt = Arc::clone(&ctx.runtime);
    let Some(route_id) = ctx.route else {
        return Error::e_explain(ErrorType::InternalError, "no route in context");
    };
    let route = &rt.config.routes[route_id];
    let state = &rt.routes[route_id];
    ctx.connect_attempts += 1;

    let Some(group) = &state.upstream else {
        return Error::e_explain(ErrorType::InternalError, "route has no upstream group");
    };
    let Some(Picked {
        addr,
        target: target_index,
    }) = group.select()
    else {
        ctx.denial = Some(ErrorCode::UpstreamUnreachable);
        return Error::e_explain(ErrorType::HTTPStatus(502), "no healthy target");
    };
    // The resolved address is checked here and connected to below: no second resolution.
    if let Err(denied) = route.destinations.check(addr.ip()) {
        tracing::warn!(request_id = %ctx.request_id, route = %route.name, %denied, "destination refused");
        ctx.denial = Some(ErrorCode::DestinationDenied);
        return Error::e_explain(ErrorType::HTTPStatus(403), "destination denied");
    }
    let targets = route.upstream.targets();
    let target = &targets[target_index.min(targets.len() - 1)];
    ctx.target = target_index;
    ctx.upstream_addr = Some(addr);

    let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
    let opts = &mut peer.options;
    opts.connection_timeout = Some(route.timeouts.connect);
    opts.total_connection_timeout = Some(route.timeouts.connect * 2);
    let remaining = ctx.deadline.map_or(route.timeouts.read, |d| {
        d.saturating_duration_since(Instant::now())
    });
    opts.read_timeout = Some(
        route
            .timeouts
            .read
            .min(remaining)
            .max(Duration::from_millis(1)),
    );
    opts.write_timeout = Some(route.timeouts.read);
    opts.verify_cert = route.tls_verify;
    opts.verify_hostname = route.tls_verify;
    opts.ca = state.ca.clone();
    opts.alpn = match (route.upstream_http2, target.tls) {
        (true, true) => ALPN::H2H1,
        (true, false) => ALPN::H2,
        (false, _) => ALPN::H1,
    };
    if let Some(pool) = route.egress_pool {
        let Some(source) = rt.egress[pool].pick_for(&addr) else {
            tracing::error!(route = %route.name, %addr, "egress pool has no address of the target's family");
            ctx.denial = Some(ErrorCode::UpstreamUnreachable);
            return Error::e_explain(ErrorType::HTTPStatus(502), "no egress address for family");
        };
        let mut bind = BindTo::default();
        bind.addr = Some(std::net::SocketAddr::new(source, 0));
        opts.bind_to = Some(bind);
        ctx.egress = Some(source);
    }
    // Pingora's pool key ignores `bind_to`, the CA bundle and ALPN: the group key keeps a
    // connection made from one egress address, or verified against one route's CA, from
    // being reused for another.
    peer.group_key = pool_group_key(ctx.egress, state.pool_salt);
    Ok(Box::new(peer))
}

/// Chooses the agent for the next connection attempt of a tunnel route, or refuses when the
/// tunnel has none (waiting first while one is expected, see [`TunnelRegistry::pick_waiting`]).
pub(super) async fn tunnel_peer(
    ctx: &mut RequestCtx,
    tunnels: &TunnelRegistry,
) -> Result<Box<HttpPeer>> {
    let rt = Arc::clone(&ctx.runtime);
    let Some(route_id) = ctx.route else {
        return Error::e_explain(ErrorType::InternalError, "no route in context");
    };
    let route = &rt.config.routes[route_id];
    let state = &rt.routes[route_id];
    let Some(tunnel) = route.upstream.tunnel() else {
        return Error::e_explain(ErrorType::InternalError, "not a tunnel route");
    };
    let tunnel = &rt.config.tunnels[tunnel];
    ctx.connect_attempts += 1;
    let limit = ctx
        .deadline
        .unwrap_or_else(|| Instant::now() + route.timeouts.total);
    let session = match tunnels
        .pick_waiting(&tunnel.name, &state.tenant, limit)
        .await
    {
        Pick::Agent(session) => session,
        Pick::Offline => {
            ctx.denial = Some(ErrorCode::TunnelOffline);
            return Error::e_explain(ErrorType::HTTPStatus(502), "no tunnel agent connected");
        }
        Pick::Reconnecting { retry_after } => {
            ctx.denial = Some(ErrorCode::TunnelReconnecting);
            ctx.retry_after = Some(retry_after.as_secs());
            return Error::e_explain(ErrorType::HTTPStatus(503), "tunnel agents reconnecting");
        }
    };
    let info = session.info();
    // The address is the agent's, for Pingora's logs; the connector ignores it.
    let mut peer = HttpPeer::new(info.remote, false, String::new());
    let opts = &mut peer.options;
    opts.connection_timeout = Some(route.timeouts.connect);
    opts.total_connection_timeout = Some(route.timeouts.connect * 2);
    let remaining = ctx.deadline.map_or(route.timeouts.read, |d| {
        d.saturating_duration_since(Instant::now())
    });
    opts.read_timeout = Some(
        route
            .timeouts
            .read
            .min(remaining)
            .max(Duration::from_millis(1)),
    );
    opts.write_timeout = Some(route.timeouts.read);
    opts.alpn = ALPN::H1;
    opts.custom_l4 = Some(Arc::new(TunnelConnector::new(
        session.clone(),
        route.timeouts.connect,
    )));
    peer.group_key = tunnel_group_key(&tunnel.name, info.session_id);
    ctx.target = 0;
    ctx.tunnel_agent = Some(session);
    Ok(Box::new(peer))
}

/// The connection-pool group of one agent session of one tunnel: a pooled stream can never
/// serve another agent or another tunnel.
fn tunnel_group_key(tunnel: &str, session: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "tunnel".hash(&mut h);
    tunnel.hash(&mut h);
    session.hash(&mut h);
    h.finish()
}

/// The connection-pool group of an egress address and a route's trust/protocol salt.
fn pool_group_key(egress: Option<IpAddr>, salt: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    egress.hash(&mut h);
    salt.hash(&mut h);
    h.finish()
}
