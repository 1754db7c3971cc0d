//! The compiled, immutable configuration the gateway runs on.
//!
//! Everything here has been validated: the proxy uses it without re-checking. Indices between
//! tables (a route's tenant, a tenant's egress pool) are plain `usize`s into the snapshot's
//! own vectors, so a lookup on the request path is an index, not a name search.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use portcullis_allowlist::{AcceptRules, CidrSet, DestinationGuard};
use portcullis_routes::{MethodSet, PathPrefix, Rewrite, RouteTable};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::RouteAuth;
use crate::Template;

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// Default header carrying a caller's gateway key.
pub const DEFAULT_GATEWAY_KEY_HEADER: &str = "x-portcullis-key";
/// Default cap on the total size of request headers.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;
/// Default time a client gets to send a request line and headers, in milliseconds.
pub const DEFAULT_REQUEST_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default time an idle keep-alive connection stays open, in milliseconds.
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 60_000;
/// Default cap on downstream connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on downstream connections from one client address (an IPv6 /64): a tenth of
/// the total, so one client cannot take every place, while a busy portal backend (one address,
/// often behind a NAT, with a connection pool that grows under bursts) keeps ample headroom.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;
/// Default `admin.max_connections`: the admin listener's own cap (operators, the console,
/// a metrics scraper — never the portal's traffic).
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// Default cap on concurrent HTTP/2 streams per connection.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default grace period of a graceful stop or upgrade, in seconds: a route's default total
/// timeout (300 s) plus the default request-head deadline (10 s), so that no request within
/// the defaults is cut.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 310;
/// Default Unix socket on which `run --upgrade` receives the listening sockets.
pub const DEFAULT_UPGRADE_SOCK: &str = "/run/portcullis/upgrade.sock";

/// Request headers forwarded by default (Backstage proxy-backend's safe list). Anything else
/// the caller sends is dropped unless the route lists it in `allowed_headers`.
pub const DEFAULT_FORWARD_HEADERS: &[&str] = &[
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
    "host",
    "accept",
    "accept-language",
    "user-agent",
];

/// The compiled configuration: one value, swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    /// sha256 of the configuration source, hex.
    pub hash: String,
    /// The file it was loaded from.
    pub source_path: PathBuf,
    /// Listeners and limits.
    pub server: Server,
    /// Where secrets are looked up.
    pub secrets: SecretSources,
    /// Admin API access.
    pub admin: Admin,
    /// The audit log.
    pub audit: Audit,
    /// Whether request metrics are recorded.
    pub metrics_enabled: bool,
    /// Published egress pools.
    pub egress_pools: Vec<EgressPool>,
    /// Tenants, referenced by index from routes.
    pub tenants: Vec<Tenant>,
    /// Routes, in file order; `RouteId(i)` of `table` is `routes[i]`.
    pub routes: Vec<Route>,
    /// The lookup index over `routes`.
    pub table: RouteTable,
    /// The listener broker agents dial (`[tunnel]`), when configured.
    pub tunnel: Option<TunnelListener>,
    /// Customer tunnels (`[[tunnels]]`), referenced by index from routes and TCP routes.
    pub tunnels: Vec<Tunnel>,
    /// Gateway ports piped through a tunnel to an agent's TCP origin (`[[tcp_routes]]`).
    pub tcp_routes: Vec<TcpRoute>,
}

/// Default deadline for an agent's TLS handshake and hello.
pub const DEFAULT_TUNNEL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval between heartbeats on a tunnel connection.
pub const DEFAULT_TUNNEL_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Default silence after which a tunnel connection is considered dead.
pub const DEFAULT_TUNNEL_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(9);
/// Default time a tunnel whose agents all left answers 503 `tunnel_reconnecting` (rather than
/// 502 `tunnel_offline`), to ride out agent restarts and network blips.
pub const DEFAULT_TUNNEL_RECONNECT_GRACE: Duration = Duration::from_secs(30);

/// `[tunnel]`: the listener broker agents dial. Changes take effect at the next restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelListener {
    /// Address to bind.
    pub listen: SocketAddr,
    /// PEM certificate chain and private key; `None` only with `insecure_plaintext = true`.
    pub tls: Option<TunnelTls>,
    /// Deadline for TLS, transport detection and the agent's hello together.
    pub handshake_timeout: Duration,
    /// How often the gateway pings each agent (sent to the agent, which pings as often).
    pub heartbeat_interval: Duration,
    /// How long without a byte from an agent before its connection is dropped.
    pub heartbeat_timeout: Duration,
    /// How long after its last agent left a tunnel answers 503 `tunnel_reconnecting` instead
    /// of 502 `tunnel_offline` (zero: offline at once).
    pub reconnect_grace: Duration,
}

/// The tunnel listener's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[[tunnels]]`: a customer's tunnel, owned by one tenant, opened by agents holding one of
/// its tokens.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// Tunnel name (unique).
    pub name: String,
    /// Index into `Snapshot::tenants`: only this tenant's routes may use the tunnel.
    pub tenant: usize,
    /// Digests of the broker tokens that open it (several allow rotation).
    pub tokens: KeyDigests,
}

/// `[[tcp_routes]]`: a gateway port whose connections are piped through a tunnel to one of the
/// agent's `tcp` origins. The listen address takes effect at the next restart; the rest on
/// reload.
#[derive(Debug, Clone)]
pub struct TcpRoute {
    /// Name in logs, metrics and the audit log (default `<tunnel>/<origin>`).
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Index into `Snapshot::tunnels`.
    pub tunnel: usize,
    /// The agent origin's name (an origin of kind `tcp` on the agent).
    pub origin: String,
    /// Who may connect: checked before anything else; required.
    pub caller_cidrs: CidrSet,
}

/// Listeners and request limits.
#[derive(Debug, Clone)]
pub struct Server {
    /// Plain HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// TLS listeners (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Vec<TlsListener>,
    /// The admin API listener.
    pub admin_listen: SocketAddr,
    /// The header carrying a caller's gateway key.
    pub gateway_key_header: HeaderName,
    /// Default cap on a request body; `None` is unlimited.
    pub max_request_body_bytes: Option<u64>,
    /// Cap on the total size of request headers.
    pub max_request_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` is trusted and extended rather than replaced.
    pub trusted_proxies: CidrSet,
    /// Longest time to receive a request line and headers, counted from the connection's
    /// accept for its first request and from the first byte of each later one.
    pub request_header_timeout: Duration,
    /// Longest idle time of a keep-alive connection between requests (also the HTTP/2 idle
    /// timeout); zero turns HTTP/1 keep-alive off (HTTP/2 connections then idle out after
    /// `request_header_timeout`).
    pub keepalive_timeout: Duration,
    /// Most downstream connections open at once, over all public listeners.
    pub max_connections: usize,
    /// Most downstream connections from one client address (IPv6: one /64); `None` is no limit.
    pub max_connections_per_ip: Option<usize>,
    /// Most concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// How long requests in flight get to finish on a graceful stop or upgrade.
    pub shutdown_grace: Duration,
    /// The Unix socket on which `run --upgrade` receives the listening sockets of the running
    /// process (in a directory only the gateway's user can write).
    pub upgrade_sock: PathBuf,
}

// === impl Server ===

impl Server {
    /// How long an HTTP/2 connection with no stream open may stay: the keep-alive timeout, or
    /// the head deadline when keep-alive is off (never unbounded: a silent connection or a
    /// PING flood would otherwise stay forever).
    #[must_use]
    pub fn h2_idle_timeout(&self) -> Duration {
        if self.keepalive_timeout.is_zero() {
            self.request_header_timeout
        } else {
            self.keepalive_timeout
        }
    }
}

/// A TLS listener.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Address to bind.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where `${secret:NAME}` is looked up for a tenant.
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    /// Environment variables `{prefix}{TENANT}_{NAME}` (uppercased, other characters as `_`).
    pub env_prefix: Option<String>,
    /// Files `{dir}/{tenant}/{name}`.
    pub dir: Option<PathBuf>,
    /// The encrypted store file (`portcullis secrets`), looked in before `dir` and the
    /// environment.
    pub store: Option<PathBuf>,
    /// The file holding the store's master key; without it, `$PORTCULLIS_MASTER_KEY`.
    pub master_key_file: Option<PathBuf>,
}

/// Admin API access rules.
#[derive(Debug, Clone, Default)]
pub struct Admin {
    /// File holding the admin bearer token (re-read on reload).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the admin bearer token.
    pub token_env: Option<String>,
    /// Peers that may scrape `/metrics` without the token (loopback always may).
    pub metrics_cidrs: CidrSet,
    /// Host names the admin API answers to besides `localhost` and IP literals (lowercase, no
    /// port): anything else gets 421, which closes DNS rebinding.
    pub hosts: Vec<String>,
    /// Most connections open at once on the admin listener (its own cap, apart from the
    /// public listeners'); request heads there have `server.request_header_timeout_ms` too.
    pub max_connections: usize,
}

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSinkConfig {
    /// No audit log.
    Off,
    /// Standard output.
    Stdout,
    /// A file rotated by size.
    File {
        /// The active file.
        path: PathBuf,
        /// Rotate before exceeding this many bytes.
        max_bytes: u64,
        /// Rotated files kept.
        keep: usize,
    },
}

/// The audit log settings (a change takes effect at the next restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Where lines go.
    pub sink: AuditSinkConfig,
    /// Lines buffered between the request path and the writer.
    pub queue: usize,
    /// Refuse requests that cannot be audited (instead of counting dropped lines).
    pub fail_closed: bool,
}

/// A set of published source addresses.
#[derive(Debug, Clone)]
pub struct EgressPool {
    /// Pool name.
    pub name: String,
    /// Addresses connections are bound to.
    pub addresses: Vec<IpAddr>,
    /// Addresses announced ahead of use.
    pub upcoming: Vec<IpAddr>,
    /// Addresses being phased out (still published).
    pub retiring: Vec<IpAddr>,
}

/// A tenant: owner of routes and of secrets.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Index into `Snapshot::egress_pools`.
    pub egress_pool: Option<usize>,
    /// Digests of the tenant's gateway keys.
    pub keys: KeyDigests,
    /// Where the tenant's callers may come from; `None` is anywhere.
    pub caller_cidrs: Option<CidrSet>,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    /// Route name (unique).
    pub name: String,
    /// Index into `Snapshot::tenants`.
    pub tenant: usize,
    /// The path prefix this route answers.
    pub path_prefix: PathPrefix,
    /// How the path is rewritten before it goes upstream.
    pub rewrite: Rewrite,
    /// Methods accepted (405 otherwise).
    pub methods: MethodSet,
    /// Where requests go.
    pub upstream: RouteUpstream,
    /// How the route authenticates upstream.
    pub auth: RouteAuth,
    /// Set `Host` to the target's authority (otherwise the caller's is forwarded).
    pub change_origin: bool,
    /// Header names the route lists in `allowed_headers`, besides the default safe list.
    pub allowed_headers: Vec<HeaderName>,
    /// Request headers forwarded: [`DEFAULT_FORWARD_HEADERS`] plus `allowed_headers`.
    pub forward_headers: Vec<HeaderName>,
    /// Whether `set-cookie` from the upstream reaches the caller (`allowed_headers` lists it).
    pub pass_set_cookie: bool,
    /// Headers injected on the upstream request (caller copies are dropped first).
    pub headers: Vec<InjectedHeader>,
    /// No gateway key required.
    pub public: bool,
    /// Where callers of this route may come from; `None` is the tenant's rule.
    pub caller_cidrs: Option<CidrSet>,
    /// Which non-public destination ranges this route may reach.
    pub destinations: DestinationGuard,
    /// Method/path/query accept rules (empty: everything).
    pub accept: AcceptRules,
    /// Upstream TLS verification.
    pub tls_verify: bool,
    /// A CA bundle to verify the upstream with instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Offer HTTP/2 to the upstream through ALPN.
    pub upstream_http2: bool,
    /// Index into `Snapshot::egress_pools` (route override or the tenant's).
    pub egress_pool: Option<usize>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retries of failed connections for idempotent methods.
    pub retries: u32,
    /// Cap on the request body; `None` is unlimited.
    pub max_request_body_bytes: Option<u64>,
    /// Active health checks of the targets.
    pub health_check: HealthCheck,
    /// Names of the secrets the route's headers and token exchange reference.
    pub secret_refs: Vec<String>,
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUpstream {
    /// Over the internet (or an explicitly allowed private range), from the tenant's egress
    /// addresses, balanced over the targets.
    Saas {
        /// At least one target.
        targets: Vec<Target>,
    },
    /// Through a customer's broker tunnel to one of the agent's origins. No egress address,
    /// destination guard, upstream TLS or health check applies: the agent reaches the origin
    /// from inside the customer network, under its own rules.
    Tunnel {
        /// Index into `Snapshot::tunnels`.
        tunnel: usize,
        /// The agent origin's name: the target's host, sent as `Host`.
        origin: String,
        /// The target as written (`http://<origin>[/base/path]`), whose base path is
        /// prepended to the forwarded path.
        target: Target,
    },
}

/// The sha256 digests of accepted keys (gateway keys, admin tokens, tunnel tokens): the config
/// never holds a key itself, and a presented key is compared in constant time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDigests(Vec<[u8; 32]>);

/// An upstream target parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (scheme default if absent).
    pub port: u16,
    /// Path the request path is appended to ("" for none).
    pub base_path: String,
    /// `host[:port]` as sent in `Host` (IPv6 bracketed, default port omitted), ready to send.
    pub authority: HeaderValue,
}

/// A header set on the upstream request.
#[derive(Debug, Clone)]
pub struct InjectedHeader {
    /// Header name.
    pub name: HeaderName,
    /// The value, with references.
    pub value: Template,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and TLS handshake).
    pub connect: Duration,
    /// Longest wait for the next bytes from the upstream.
    pub read: Duration,
    /// Longest whole exchange with the upstream, checked at each read.
    pub total: Duration,
}

/// Active health checking of route targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP path to GET; `None` checks that a TCP connection opens.
    pub path: Option<String>,
    /// Time between checks.
    pub interval: Duration,
}

// === impl Snapshot ===

impl Snapshot {
    /// The first 12 hex digits of the hash, for logs and the console.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12.min(self.hash.len())]
    }

    /// The tenant of a route.
    pub fn tenant_of(&self, route: &Route) -> &Tenant {
        &self.tenants[route.tenant]
    }

    /// Looks up a route by name.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Every `(tenant id, secret name)` a route references, in route order, each pair once.
    pub fn secret_refs(&self) -> Vec<(&str, &str)> {
        let mut seen = std::collections::HashSet::new();
        self.routes
            .iter()
            .flat_map(|r| {
                let tenant = self.tenants[r.tenant].id.as_str();
                r.secret_refs.iter().map(move |s| (tenant, s.as_str()))
            })
            .filter(|pair| seen.insert(*pair))
            .collect()
    }

    /// The routes that go through tunnel `tunnel` (an index into `tunnels`).
    pub fn routes_using_tunnel(&self, tunnel: usize) -> impl Iterator<Item = &Route> + '_ {
        self.routes
            .iter()
            .filter(move |r| r.upstream.tunnel() == Some(tunnel))
    }

    /// The routes of `tenant` whose headers reference the secret `name`.
    pub fn routes_using_secret<'a>(
        &'a self,
        tenant: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| {
            self.tenants[r.tenant].id == tenant && r.secret_refs.iter().any(|s| s == name)
        })
    }
}

// === impl RouteUpstream ===

impl RouteUpstream {
    /// The targets requests are balanced over.
    pub fn targets(&self) -> &[Target] {
        match self {
            RouteUpstream::Saas { targets } => targets,
            RouteUpstream::Tunnel { target, .. } => std::slice::from_ref(target),
        }
    }

    /// The tunnel index, for tunnel routes.
    pub fn tunnel(&self) -> Option<usize> {
        match self {
            RouteUpstream::Saas { .. } => None,
            RouteUpstream::Tunnel { tunnel, .. } => Some(*tunnel),
        }
    }
}

// === impl KeyDigests ===

impl KeyDigests {
    /// Digests as given (each the sha256 of one accepted key).
    pub fn new(digests: Vec<[u8; 32]>) -> Self {
        Self(digests)
    }

    /// The digest of one key.
    pub fn of_key(key: &[u8]) -> Self {
        Self(vec![sha256(key)])
    }

    /// Whether no key is accepted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many keys are accepted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when `digest` is the sha256 of one of the keys (for callers that hashed the key
    /// themselves, such as the tunnel handshake). Constant time, as [`KeyDigests::matches`].
    pub fn contains_digest(&self, digest: &[u8; 32]) -> bool {
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(digest))
            .into()
    }

    /// True when `presented` is one of the keys. Every digest is compared in constant time, so
    /// neither timing nor position tells which one (if any) came close.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.contains_digest(&sha256(presented))
    }
}

/// The sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Target {
    /// `host:port` as written in a `Host` header: IPv6 bracketed, default port omitted.
    pub fn authority_text(host: &str, port: u16, tls: bool) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let default_port = if tls { 443 } else { 80 };
        if port == default_port {
            host
        } else {
            format!("{host}:{port}")
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.base_path)
    }
}

// === impl Audit ===

impl Default for Audit {
    fn default() -> Self {
        Self {
            sink: AuditSinkConfig::Off,
            queue: 65_536,
            fail_closed: false,
        }
    }
}

// === impl Timeouts ===

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            total: Duration::from_secs(300),
        }
    }
}
