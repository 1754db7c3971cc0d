//! `[tunnel]`, `[[tunnels]]`, `[[tcp_routes]]` and the `tunnel = …` key of a route: broker
//! tunnels, through which routes reach APIs and ports inside a customer network.
//!
//! A tunnel belongs to one tenant, and only that tenant's routes may name it: this is checked
//! here, once, so an agent's tunnel can never carry another tenant's requests. A tunnel route
//! reaches an agent *origin* by name (`target = "http://sonar"`), so what a SaaS route says about
//! the network path — egress pool, destination guard, upstream TLS, health checks — does not
//! apply to it and is refused rather than silently ignored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_allowlist::CidrSet;
use toml::Spanned;

use super::{is_identifier, Compiler};
use crate::raw::{RawConfig, RawRoute, RawTunnelListener};
use crate::snapshot::*;

/// The compiled tunnels and their names, for resolving `tunnel = "…"`.
pub(super) struct TunnelIndex<'a> {
    pub(super) tunnels: &'a [Tunnel],
    pub(super) tenants: &'a [Tenant],
    pub(super) by_name: HashMap<&'a str, usize>,
}

/// Route keys that describe the network path to a SaaS target and mean nothing for a tunnel
/// route, with why.
const NOT_FOR_TUNNEL_ROUTES: &str = "does not apply to a tunnel route: the agent reaches the \
     origin from inside the customer network";

// === impl TunnelIndex ===

impl<'a> TunnelIndex<'a> {
    pub(super) fn new(tunnels: &'a [Tunnel], tenants: &'a [Tenant]) -> Self {
        let by_name = tunnels
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        Self {
            tunnels,
            tenants,
            by_name,
        }
    }
}

// === impl Compiler ===

impl Compiler<'_> {
    /// `[tunnel]`.
    pub(super) fn tunnel_listener(&mut self, raw: &RawConfig) -> Option<TunnelListener> {
        let spanned = raw.tunnel.as_ref()?;
        let t: &RawTunnelListener = spanned.get_ref();
        let errors_before = self.r.count();
        let listen = self.socket_addr("tunnel.listen", &t.listen);
        let plaintext = t.insecure_plaintext.as_ref().is_some_and(|p| *p.get_ref());
        let tls = match (&t.cert, &t.key) {
            (cert, key) if plaintext => {
                if let Some(span) = cert.as_ref().or(key.as_ref()).map(Spanned::span) {
                    self.r.error(
                        span,
                        "tunnel: set cert and key, or insecure_plaintext = true, not both",
                    );
                }
                None
            }
            (Some(cert), Some(key)) => {
                let cert = self.existing_file("tunnel.cert", cert);
                let key = self.existing_file("tunnel.key", key);
                cert.zip(key).map(|(cert, key)| TunnelTls { cert, key })
            }
            (cert, _) => {
                let missing = if cert.is_none() { "cert" } else { "key" };
                self.r.error(
                    spanned.span().start..spanned.span().start,
                    format!(
                        "tunnel.{missing}: missing; agents connect over TLS, so the tunnel \
                         listener needs cert and key (only insecure_plaintext = true turns TLS off)"
                    ),
                );
                None
            }
        };
        let mut ms =
            |key: &str, v: &Option<Spanned<u64>>, range: (u64, u64), default: Duration| match v {
                None => default,
                Some(v) if *v.get_ref() < range.0 || *v.get_ref() > range.1 => {
                    self.r.error(
                        v.span(),
                        format!(
                            "tunnel.{key}: {} is outside {}..={} milliseconds",
                            v.get_ref(),
                            range.0,
                            range.1
                        ),
                    );
                    default
                }
                Some(v) => Duration::from_millis(*v.get_ref()),
            };
        let handshake_timeout = ms(
            "handshake_timeout_ms",
            &t.handshake_timeout_ms,
            (100, 120_000),
            DEFAULT_TUNNEL_HANDSHAKE_TIMEOUT,
        );
        let heartbeat_interval = ms(
            "heartbeat_interval_ms",
            &t.heartbeat_interval_ms,
            (100, 60_000),
            DEFAULT_TUNNEL_HEARTBEAT_INTERVAL,
        );
        let heartbeat_timeout = ms(
            "heartbeat_timeout_ms",
            &t.heartbeat_timeout_ms,
            (200, 600_000),
            DEFAULT_TUNNEL_HEARTBEAT_TIMEOUT,
        );
        let reconnect_grace = ms(
            "reconnect_grace_ms",
            &t.reconnect_grace_ms,
            (0, 3_600_000),
            DEFAULT_TUNNEL_RECONNECT_GRACE,
        );
        if heartbeat_timeout < heartbeat_interval * 2 {
            let span = t
                .heartbeat_timeout_ms
                .as_ref()
                .or(t.heartbeat_interval_ms.as_ref())
                .map_or(0..0, |v| v.span());
            self.r.error(
                span,
                format!(
                    "tunnel.heartbeat_timeout_ms: {} must be at least twice heartbeat_interval_ms ({}), \
                     or one late ping drops a healthy agent",
                    heartbeat_timeout.as_millis(),
                    heartbeat_interval.as_millis()
                ),
            );
        }
        if self.r.count() > errors_before {
            return None;
        }
        Some(TunnelListener {
            listen: listen?,
            tls,
            handshake_timeout,
            heartbeat_interval,
            heartbeat_timeout,
            reconnect_grace,
        })
    }

    /// `[[tunnels]]`.
    pub(super) fn tunnels(
        &mut self,
        raw: &RawConfig,
        tenant_index: &HashMap<&str, usize>,
    ) -> Vec<Tunnel> {
        let mut out = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut digests: HashMap<[u8; 32], String> = HashMap::new();
        if raw.tunnel.is_none() {
            if let Some(first) = raw.tunnels.first() {
                self.r.error(
                    first.get_ref().name.span(),
                    "tunnels: no [tunnel] listener is configured, so no agent can connect; \
                     add [tunnel] with listen, cert and key",
                );
            }
        }
        for t in &raw.tunnels {
            let t = t.get_ref();
            let name = t.name.get_ref();
            if !is_identifier(name) {
                self.r.error(
                    t.name.span(),
                    format!(
                        "tunnels.name: '{name}' must be lowercase letters, digits, '-' and '_'"
                    ),
                );
            } else if let Some(line) = names.get(name) {
                self.r.error(
                    t.name.span(),
                    format!(
                        "tunnels: duplicate tunnel name '{name}' (first defined on line {line})"
                    ),
                );
            } else {
                names.insert(name.clone(), self.line_of(t.name.span().start).0);
            }
            let tenant = tenant_index.get(t.tenant.get_ref().as_str()).copied();
            if tenant.is_none() {
                self.r.error(
                    t.tenant.span(),
                    format!(
                        "tunnels '{name}': tenant: unknown tenant '{}'",
                        t.tenant.get_ref()
                    ),
                );
            }
            let mut tokens = Vec::new();
            for k in &t.token_sha256 {
                let mut digest = [0u8; 32];
                if hex::decode_to_slice(k.get_ref().trim(), &mut digest).is_err() {
                    self.r.error(
                        k.span(),
                        format!(
                            // Never echo the value: a raw token pasted here by mistake is a secret.
                            "tunnels '{name}': token_sha256 must be 64 hex digits, the sha256 of the \
                             broker token (`portcullis hash-key`); this value has {} characters",
                            k.get_ref().chars().count()
                        ),
                    );
                    continue;
                }
                match digests.get(&digest) {
                    Some(other) => self.r.error(
                        k.span(),
                        format!(
                            "tunnels '{name}': token_sha256: the same token already opens tunnel \
                             '{other}'; a token opens one tunnel"
                        ),
                    ),
                    None => {
                        digests.insert(digest, name.clone());
                        tokens.push(digest);
                    }
                }
            }
            if let Some(tenant) = tenant {
                out.push(Tunnel {
                    name: name.clone(),
                    tenant,
                    tokens: KeyDigests::new(tokens),
                });
            }
        }
        out
    }

    /// The `tunnel = "…"` of a route: checks the tunnel, its tenant, the target and the keys that
    /// do not apply, and returns the route's upstream.
    pub(super) fn route_tunnel(
        &mut self,
        raw: &Spanned<RawRoute>,
        tunnel: &Spanned<String>,
        tenant: Option<usize>,
        targets: &[Target],
        index: &TunnelIndex<'_>,
    ) -> Option<RouteUpstream> {
        let r = raw.get_ref();
        let name = r.name.get_ref();
        let at = |key: &str| format!("routes '{name}': {key}");
        let errors_before = self.r.count();
        let found = index.by_name.get(tunnel.get_ref().as_str()).copied();
        match found {
            None => self.r.error(
                tunnel.span(),
                format!("{}: unknown tunnel '{}'", at("tunnel"), tunnel.get_ref()),
            ),
            Some(i) => {
                let owner = index.tunnels[i].tenant;
                if tenant.is_some_and(|t| t != owner) {
                    self.r.error(
                        tunnel.span(),
                        format!(
                            "{}: tunnel '{}' belongs to tenant '{}', not '{}'; a route may only use \
                             its own tenant's tunnels",
                            at("tunnel"),
                            tunnel.get_ref(),
                            index.tenants[owner].id,
                            r.tenant.get_ref()
                        ),
                    );
                }
            }
        }
        if let Some(ts) = &r.targets {
            self.r.error(
                ts.span(),
                format!(
                    "{}: a tunnel route has one target, \"http://<agent origin>\"",
                    at("targets")
                ),
            );
        }
        let target = r.target.as_ref().zip(targets.first());
        if let Some((span, t)) = target {
            let origin_ok = !t.host.is_empty()
                && t.host.len() <= 63
                && t.host.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                });
            if t.tls {
                self.r.error(
                    span.span(),
                    format!(
                        "{}: write \"http://{}\": a tunnel target names an agent origin, and the \
                         agent's origin url decides whether it is reached over TLS",
                        at("target"),
                        t.host
                    ),
                );
            } else if span.get_ref().contains(&format!("{}:", t.host)) || t.port != 80 {
                self.r.error(
                    span.span(),
                    format!(
                        "{}: a tunnel target names an agent origin and has no port (the origin's \
                         url on the agent has it)",
                        at("target")
                    ),
                );
            } else if !origin_ok {
                self.r.error(
                    span.span(),
                    format!(
                        "{}: '{}' is not an agent origin name (1-63 characters of a-z, 0-9, '-', \
                         '_', '.')",
                        at("target"),
                        t.host
                    ),
                );
            }
        }
        let name_span = r.name.span();
        let not_here = [
            ("egress_pool", r.egress_pool.as_ref().map(Spanned::span)),
            (
                "allow_destinations",
                r.allow_destinations.as_ref().map(Spanned::span),
            ),
            ("ca_file", r.ca_file.as_ref().map(Spanned::span)),
            ("health_check", r.health_check.as_ref().map(Spanned::span)),
            ("tls_verify", r.tls_verify.map(|_| name_span.clone())),
            (
                "upstream_http2",
                r.upstream_http2.then(|| name_span.clone()),
            ),
        ];
        for (key, span) in not_here {
            if let Some(span) = span {
                self.r
                    .error(span, format!("{}: {NOT_FOR_TUNNEL_ROUTES}", at(key)));
            }
        }
        if r.change_origin == Some(false) {
            self.r.error(
                r.name.span(),
                format!(
                    "{}: a tunnel route always sends Host = the agent origin's name, which is \
                     how the agent finds the origin",
                    at("change_origin")
                ),
            );
        }
        if self.r.count() > errors_before {
            return None;
        }
        let (_, target) = target?;
        Some(RouteUpstream::Tunnel {
            tunnel: found?,
            origin: target.host.clone(),
            target: target.clone(),
        })
    }

    /// `[[tcp_routes]]`.
    pub(super) fn tcp_routes(
        &mut self,
        raw: &RawConfig,
        index: &TunnelIndex<'_>,
        allowlists: &BTreeMap<String, CidrSet>,
    ) -> Vec<TcpRoute> {
        let mut out: Vec<TcpRoute> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for spanned in &raw.tcp_routes {
            let t = spanned.get_ref();
            let errors_before = self.r.count();
            let label = t
                .name
                .as_ref()
                .map_or_else(|| t.listen.get_ref().clone(), |n| n.get_ref().clone());
            let at = |key: &str| format!("tcp_routes '{label}': {key}");
            if let Some(n) = &t.name {
                if !is_identifier(n.get_ref()) {
                    self.r.error(
                        n.span(),
                        format!(
                            "tcp_routes.name: '{}' must be lowercase letters, digits, '-' and '_'",
                            n.get_ref()
                        ),
                    );
                }
            }
            let listen = self.socket_addr(&at("listen"), &t.listen);
            let tunnel = index.by_name.get(t.tunnel.get_ref().as_str()).copied();
            if tunnel.is_none() {
                self.r.error(
                    t.tunnel.span(),
                    format!("{}: unknown tunnel '{}'", at("tunnel"), t.tunnel.get_ref()),
                );
            }
            let origin = t.origin.get_ref();
            let origin_ok = !origin.is_empty()
                && origin.len() <= 63
                && origin.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                });
            if !origin_ok {
                self.r.error(
                    t.origin.span(),
                    format!(
                        "{}: '{origin}' is not an agent origin name (1-63 characters of a-z, 0-9, \
                         '-', '_', '.')",
                        at("origin")
                    ),
                );
            }
            let caller_cidrs = match &t.caller_cidrs {
                None => {
                    self.r.error(
                        t.listen.span(),
                        format!(
                            "{}: missing; a TCP route must say who may connect (e.g. \
                             [\"10.20.0.0/16\"])",
                            at("caller_cidrs")
                        ),
                    );
                    None
                }
                Some(c) if c.get_ref().is_empty() => {
                    self.r.error(
                        c.span(),
                        format!("{}: is empty, so nobody could connect", at("caller_cidrs")),
                    );
                    None
                }
                Some(c) => self.cidr_set(&at("caller_cidrs"), c.get_ref(), allowlists),
            };
            if self.r.count() > errors_before {
                continue;
            }
            let (Some(listen), Some(tunnel), Some(caller_cidrs)) = (listen, tunnel, caller_cidrs)
            else {
                continue;
            };
            let name = t.name.as_ref().map_or_else(
                || format!("{}/{origin}", index.tunnels[tunnel].name),
                |n| n.get_ref().clone(),
            );
            let name_span = t
                .name
                .as_ref()
                .map_or_else(|| t.listen.span(), Spanned::span);
            if let Some(line) = names.get(&name) {
                self.r.error(
                    name_span,
                    format!(
                        "tcp_routes: duplicate TCP route name '{name}' (first on line {line}); \
                         give each route its own name"
                    ),
                );
                continue;
            }
            names.insert(name.clone(), self.line_of(name_span.start).0);
            out.push(TcpRoute {
                name,
                listen,
                tunnel,
                origin: origin.clone(),
                caller_cidrs,
            });
        }
        out
    }

    /// Reports listeners of tunnels and TCP routes that another listener already uses.
    pub(super) fn tunnel_listener_conflicts(&mut self, raw: &RawConfig, server: Option<&Server>) {
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        if let Some(server) = server {
            seen.extend(server.listen.iter().copied());
            seen.extend(server.tls.iter().map(|t| t.listen));
            seen.insert(server.admin_listen);
        }
        let mut check = |addr: SocketAddr, span: std::ops::Range<usize>, key: &str| {
            // Port 0 ("any free port", tests and the demo) may repeat.
            if addr.port() != 0 && !seen.insert(addr) {
                self.r.error(
                    span,
                    format!("{key}: {addr} is already used by another listener"),
                );
            }
        };
        if let Some(t) = &raw.tunnel {
            let listen = &t.get_ref().listen;
            if let Ok(addr) = listen.get_ref().parse::<SocketAddr>() {
                check(addr, listen.span(), "tunnel.listen");
            }
        }
        for t in &raw.tcp_routes {
            if let Ok(addr) = t.get_ref().listen.get_ref().parse::<SocketAddr>() {
                check(addr, t.get_ref().listen.span(), "tcp_routes.listen");
            }
        }
    }
}

#[cfg(test)]
mod tests;
