//! The raw TOML schema: exactly what an operator may write, nothing compiled.
//!
//! Every table denies unknown fields, so a typo is an error with its location rather than a
//! silently ignored key. Fields that later validation needs to point at are `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) secrets: RawSecrets,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) audit: RawAudit,
    #[serde(default)]
    pub(crate) metrics: RawMetrics,
    #[serde(default)]
    pub(crate) allowlists: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) egress_pools: Vec<Spanned<RawEgressPool>>,
    #[serde(default)]
    pub(crate) tenants: Vec<Spanned<RawTenant>>,
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<RawRoute>>,
    pub(crate) tunnel: Option<Spanned<RawTunnelListener>>,
    #[serde(default)]
    pub(crate) tunnels: Vec<Spanned<RawTunnel>>,
    #[serde(default)]
    pub(crate) tcp_routes: Vec<Spanned<RawTcpRoute>>,
}

/// `[server]`: listeners and request limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) tls: Vec<Spanned<RawTlsListener>>,
    pub(crate) admin_listen: Option<Spanned<String>>,
    pub(crate) gateway_key_header: Option<Spanned<String>>,
    pub(crate) max_request_body_bytes: Option<Spanned<u64>>,
    pub(crate) max_request_header_bytes: Option<Spanned<u64>>,
    pub(crate) trusted_proxies: Option<Vec<Spanned<String>>>,
    pub(crate) request_header_timeout_ms: Option<Spanned<u64>>,
    pub(crate) keepalive_timeout_ms: Option<Spanned<u64>>,
    pub(crate) max_connections: Option<Spanned<u64>>,
    pub(crate) max_connections_per_ip: Option<Spanned<u64>>,
    pub(crate) h2_max_concurrent_streams: Option<Spanned<u64>>,
    pub(crate) shutdown_grace_seconds: Option<Spanned<u64>>,
    pub(crate) upgrade_sock: Option<Spanned<String>>,
}

/// `[[server.tls]]`: a TLS listener (HTTP/1.1 and HTTP/2 through ALPN).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsListener {
    pub(crate) listen: Spanned<String>,
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
}

/// `[secrets]`: where `${secret:NAME}` references are looked up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecrets {
    pub(crate) env_prefix: Option<Spanned<String>>,
    pub(crate) dir: Option<Spanned<String>>,
    pub(crate) store: Option<Spanned<String>>,
    pub(crate) master_key_file: Option<Spanned<String>>,
}

/// `[admin]`: who may use the admin API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) token_file: Option<Spanned<String>>,
    pub(crate) token_env: Option<Spanned<String>>,
    pub(crate) metrics_cidrs: Option<Vec<Spanned<String>>>,
    pub(crate) hosts: Option<Vec<Spanned<String>>>,
    pub(crate) max_connections: Option<Spanned<u64>>,
}

/// `[audit]`: the tamper-evident audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) sink: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) max_bytes: Option<Spanned<u64>>,
    pub(crate) keep: Option<Spanned<u64>>,
    pub(crate) queue: Option<Spanned<u64>>,
    pub(crate) overflow: Option<Spanned<String>>,
}

/// `[metrics]`: the Prometheus exporter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) enabled: Option<bool>,
}

/// `[[egress_pools]]`: published source addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgressPool {
    pub(crate) name: Spanned<String>,
    pub(crate) addresses: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) upcoming: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) retiring: Vec<Spanned<String>>,
}

/// `[[tenants]]`: who owns routes and how their callers authenticate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub(crate) id: Spanned<String>,
    pub(crate) egress_pool: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) key_sha256: Vec<Spanned<String>>,
    pub(crate) caller_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[[routes]]`: one path prefix mapped to an upstream API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Spanned<String>,
    pub(crate) tenant: Spanned<String>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) path: Spanned<String>,
    pub(crate) target: Option<Spanned<String>>,
    pub(crate) targets: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) change_origin: Option<bool>,
    pub(crate) allowed_methods: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) allowed_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Spanned<String>>,
    pub(crate) strip_prefix: Option<bool>,
    pub(crate) rewrite_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) public: bool,
    pub(crate) caller_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) allow_destinations: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) tls_verify: Option<bool>,
    #[serde(default)]
    pub(crate) upstream_http2: bool,
    pub(crate) egress_pool: Option<Spanned<String>>,
    pub(crate) connect_timeout_ms: Option<Spanned<u64>>,
    pub(crate) read_timeout_ms: Option<Spanned<u64>>,
    pub(crate) total_timeout_ms: Option<Spanned<u64>>,
    pub(crate) retries: Option<Spanned<u32>>,
    pub(crate) tunnel: Option<Spanned<String>>,
    pub(crate) max_request_body_bytes: Option<Spanned<u64>>,
    pub(crate) health_check: Option<Spanned<RawHealthCheck>>,
    #[serde(default)]
    pub(crate) accept: Vec<Spanned<RawAcceptRule>>,
    pub(crate) auth: Option<Spanned<String>>,
    pub(crate) token_header: Option<Spanned<String>>,
    pub(crate) opaque: Option<Spanned<bool>>,
    pub(crate) jwt: Option<Spanned<RawJwt>>,
    pub(crate) exchange: Option<Spanned<RawExchange>>,
}

/// `[routes.jwt]`: how a passed-through token is validated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub(crate) issuer: Option<Spanned<String>>,
    pub(crate) audiences: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) jwks_url: Option<Spanned<String>>,
    pub(crate) algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) leeway_seconds: Option<Spanned<u64>>,
    pub(crate) jwks_refresh_seconds: Option<Spanned<u64>>,
    pub(crate) jwks_grace_seconds: Option<Spanned<u64>>,
    pub(crate) jwks_min_refetch_seconds: Option<Spanned<u64>>,
}

/// `[routes.exchange]`: how the tenant's key and secret become a token. One table for both
/// kinds (serde's `flatten` cannot be combined with `deny_unknown_fields`); which keys a kind
/// takes is checked when compiling.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExchange {
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) token_url: Option<Spanned<String>>,
    pub(crate) client_id: Option<Spanned<String>>,
    pub(crate) client_secret: Option<Spanned<String>>,
    pub(crate) scope: Option<Spanned<String>>,
    pub(crate) audience: Option<Spanned<String>>,
    pub(crate) client_auth: Option<Spanned<String>>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) body: Option<Spanned<String>>,
    pub(crate) token_pointer: Option<Spanned<String>>,
    pub(crate) expires_in_pointer: Option<Spanned<String>>,
    pub(crate) header: Option<Spanned<String>>,
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) refresh_skew_seconds: Option<Spanned<u64>>,
}

/// `[routes.health_check]`: active checks of each target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) interval_ms: Option<Spanned<u64>>,
}

/// `[[routes.accept]]`: one accepted method/path/query shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcceptRule {
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    pub(crate) path: Spanned<String>,
    #[serde(default)]
    pub(crate) query: BTreeMap<String, String>,
}

/// `[tunnel]`: the listener broker agents dial.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnelListener {
    pub(crate) listen: Spanned<String>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) insecure_plaintext: Option<Spanned<bool>>,
    pub(crate) handshake_timeout_ms: Option<Spanned<u64>>,
    pub(crate) heartbeat_interval_ms: Option<Spanned<u64>>,
    pub(crate) heartbeat_timeout_ms: Option<Spanned<u64>>,
    pub(crate) reconnect_grace_ms: Option<Spanned<u64>>,
}

/// `[[tunnels]]`: one customer tunnel, the tokens its agents authenticate with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub(crate) name: Spanned<String>,
    pub(crate) tenant: Spanned<String>,
    #[serde(default)]
    pub(crate) token_sha256: Vec<Spanned<String>>,
}

/// `[[tcp_routes]]`: a port on the gateway piped through a tunnel to an agent's TCP origin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcpRoute {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) listen: Spanned<String>,
    pub(crate) tunnel: Spanned<String>,
    pub(crate) origin: Spanned<String>,
    pub(crate) caller_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
}
