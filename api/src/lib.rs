//! The admin API's wire types: what `GET /api/v1/…` returns and what the console reads.
//!
//! The gateway serialises these and the console (`portcullis-console`) deserialises the same
//! types, so the two cannot drift apart: a field renamed here breaks the build of both. This
//! crate is serde types only — no IO, no HTTP client, no policy. It never carries a secret
//! value, a header value or a query value: the gateway has nothing of the kind to put in it.
//!
//! Times are Unix milliseconds (`*_ms`) or seconds where the name says so; durations are
//! floating-point seconds or milliseconds as named. Fields added after the first release
//! carry `#[serde(default)]`, so a newer console can read an older gateway.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Paths of the admin API.
pub mod paths {
    /// Prometheus metrics (text exposition format).
    pub const METRICS: &str = "/metrics";
    /// [`super::Status`].
    pub const STATUS: &str = "/api/v1/status";
    /// [`super::Routes`].
    pub const ROUTES: &str = "/api/v1/routes";
    /// [`super::TrafficPage`]; query `after=SEQ&limit=N`.
    pub const TRAFFIC: &str = "/api/v1/traffic";
    /// [`super::Secrets`].
    pub const SECRETS: &str = "/api/v1/secrets";
    /// [`super::Tunnels`].
    pub const TUNNELS: &str = "/api/v1/tunnels";
    /// `POST`: reloads the configuration; answers a [`super::ReloadStatus`].
    pub const RELOAD: &str = "/api/v1/reload";
}

/// The largest `limit` of [`paths::TRAFFIC`].
pub const MAX_TRAFFIC_LIMIT: usize = 1000;

/// Every error of the admin API: `{"error": "<code>", "message": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code: `unauthorized`, `admin_token_not_configured`, `not_found`,
    /// `method_not_allowed`, `bad_request`, `misdirected_request`.
    pub error: String,
    /// Details for people, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// === status ===

/// `GET /api/v1/status`: the gateway process and its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The gateway's version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// When the process started.
    pub started_at_ms: u64,
    /// Seconds since the process started.
    pub uptime_seconds: f64,
    /// The addresses bound at startup.
    pub listeners: Listeners,
    /// The configuration in force.
    pub config: ConfigInfo,
    /// The outcome of the last reload (the startup load counts as one).
    pub last_reload: ReloadStatus,
    /// Published egress pools.
    pub egress_pools: Vec<EgressPool>,
    /// Sizes of the configuration and of live state.
    pub counts: Counts,
    /// The audit log.
    pub audit: AuditStatus,
}

/// Addresses the gateway listens on (fixed at startup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listeners {
    /// Plain HTTP listeners.
    pub http: Vec<SocketAddr>,
    /// TLS listeners.
    pub https: Vec<SocketAddr>,
    /// The admin API.
    pub admin: SocketAddr,
    /// The listener broker agents dial, when configured.
    #[serde(default)]
    pub tunnel: Option<SocketAddr>,
    /// The listener of each TCP route (`[[tcp_routes]]`).
    #[serde(default)]
    pub tcp_routes: Vec<TcpRouteListener>,
}

/// Where one TCP route listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpRouteListener {
    /// The route's name.
    pub name: String,
    /// The address bound (the real port when the config asked for port 0).
    pub addr: SocketAddr,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// sha256 of the configuration source, hex.
    pub hash: String,
    /// Where it was read from.
    pub source: String,
    /// When this configuration was loaded.
    pub loaded_at_ms: u64,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new configuration is in force.
    Success,
    /// The new configuration was rejected; the previous one stays in force.
    Error,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadTrigger {
    /// The first load, at process start.
    Startup,
    /// A change of the config file or of the secrets directory.
    File,
    /// `SIGHUP`.
    Sighup,
    /// `POST /api/v1/reload`.
    Api,
}

/// The outcome of a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// How it ended.
    pub result: ReloadResult,
    /// What asked for it.
    pub trigger: ReloadTrigger,
    /// When it finished.
    pub at_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// The hash of the configuration in force afterwards.
    pub active_hash: String,
    /// Every error of a rejected configuration, each `file:line:col: error: …`.
    pub errors: Vec<String>,
    /// Changes that were not applied because they need a restart.
    pub restart_required: Vec<String>,
}

/// A published egress pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPool {
    /// Pool name.
    pub name: String,
    /// Addresses connections leave from.
    pub addresses: Vec<IpAddr>,
    /// Addresses announced ahead of use.
    pub upcoming: Vec<IpAddr>,
    /// Addresses being phased out (still published).
    pub retiring: Vec<IpAddr>,
}

/// Sizes of the configuration and of live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Configured tenants.
    pub tenants: usize,
    /// Configured routes.
    pub routes: usize,
    /// Secrets the routes reference.
    pub secrets: usize,
    /// Of those, the ones that are not usable (missing, undecryptable or expired).
    pub secrets_missing: usize,
    /// Requests finished since the process started.
    pub requests: u64,
    /// Requests being served now.
    pub active_requests: i64,
    /// Configured tunnels.
    #[serde(default)]
    pub tunnels: usize,
    /// Tunnels with at least one connected agent.
    #[serde(default)]
    pub tunnels_online: usize,
}

/// What happens to a request whose audit line cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditPolicy {
    /// The line is dropped and counted.
    Drop,
    /// The request is refused (503 `audit_unavailable`).
    FailClosed,
}

/// The state of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStatus {
    /// Whether a sink is configured.
    pub enabled: bool,
    /// The overflow policy.
    pub policy: AuditPolicy,
    /// Lines written.
    pub written: u64,
    /// Lines lost (queue full, write errors, writer stopped).
    pub dropped: u64,
    /// Failed writes, rotations or reopenings.
    pub write_errors: u64,
    /// Requests refused because a fail-closed log could not take their line.
    pub refused: u64,
    /// Whether the sink is writable and the writer running.
    pub healthy: bool,
    /// `seq` of the last line written (0 before the first).
    pub head_seq: u64,
    /// `hash` of the last line written; compare it with `portcullis audit verify`'s head.
    pub head_hash: String,
}

// === routes ===

/// `GET /api/v1/routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// Every configured route, in file order.
    pub routes: Vec<RouteStatus>,
}

/// How a route authenticates upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The gateway injects the tenant's secret as headers.
    #[default]
    Inject,
    /// The caller's own (user's) token is forwarded, optionally validated as a JWT.
    Passthrough,
    /// The gateway exchanges the tenant's key and secret for a short-lived token.
    Exchange,
}

/// Where a route's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    /// Over the internet, from the tenant's egress addresses.
    #[default]
    Saas,
    /// Through a customer's broker tunnel.
    Tunnel,
}

/// One route with its live statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// Route name.
    pub name: String,
    /// Owning tenant.
    pub tenant: String,
    /// Host pattern (`api.example.com`, `*.example.com`, `*`).
    pub host: Option<String>,
    /// Path prefix.
    pub path: String,
    /// Accepted methods (`*` or a list).
    pub methods: String,
    /// No gateway key needed.
    pub public: bool,
    /// How the route authenticates upstream.
    #[serde(default)]
    pub auth: AuthMode,
    /// Where requests go.
    #[serde(default)]
    pub upstream: UpstreamKind,
    /// The tunnel, for tunnel routes.
    #[serde(default)]
    pub tunnel: Option<String>,
    /// Target URLs.
    pub targets: Vec<String>,
    /// The egress pool requests leave from.
    pub egress_pool: Option<String>,
    /// Secret references that do not resolve (the route answers 503 while any does).
    pub secrets_missing: Vec<String>,
    /// The last minute.
    pub stats: WindowStats,
    /// Resolved upstream addresses and their health.
    pub upstreams: Vec<UpstreamHealth>,
}

/// Statistics of one route over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Requests finished in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub requests_per_second: f64,
    /// Share of requests that failed: answered 5xx, or cut after the response started.
    pub error_rate: f64,
    /// Median duration in seconds (`None` without requests).
    pub p50_seconds: Option<f64>,
    /// 99th-percentile duration in seconds (`None` without requests).
    pub p99_seconds: Option<f64>,
}

/// One resolved upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamHealth {
    /// `ip:port`.
    pub address: String,
    /// Whether health checks (if any) pass.
    pub healthy: bool,
}

// === traffic ===

/// `GET /api/v1/traffic?after=SEQ&limit=N`: recent requests, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficPage {
    /// Requests with `seq > after`.
    pub entries: Vec<TrafficEntry>,
    /// Pass as `after` to get what comes next.
    pub next: u64,
    /// Entries after `after` were overwritten before they were read.
    pub gap: bool,
}

/// One finished request. No header value, no query value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficEntry {
    /// Sequence number (1-based, increasing).
    pub seq: u64,
    /// When the request arrived.
    pub time_ms: u64,
    /// The tenant, once known.
    pub tenant: Option<String>,
    /// The matched route.
    pub route: Option<String>,
    /// Request method.
    pub method: String,
    /// Path, with query parameter names only.
    pub path: String,
    /// Status sent to the caller.
    pub status: u16,
    /// The error code when the gateway refused or failed the request (`upstream_aborted` when
    /// the upstream cut the response after it had started).
    pub denial: Option<String>,
    /// From arrival to the end of the response, in milliseconds.
    pub duration_ms: f64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Source address the request left from.
    pub egress: Option<IpAddr>,
    /// Where it went: `ip:port`, or `tunnel/<tunnel>/<agent id>` for tunnel routes.
    pub upstream: Option<String>,
    /// The request id (also in `x-request-id`).
    pub request_id: String,
}

// === secrets ===

/// `GET /api/v1/secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    /// Every referenced secret, sorted by tenant and name.
    pub secrets: Vec<SecretStatus>,
    /// Token exchange state of every `auth = "exchange"` route.
    #[serde(default)]
    pub exchanges: Vec<ExchangeStatus>,
}

/// Whether a secret can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretState {
    /// Loaded and usable.
    Present,
    /// No source has it.
    Missing,
    /// The encrypted store has it but it cannot be decrypted (wrong key, tampering).
    Undecryptable,
    /// Loaded, but its expiry has passed.
    Expired,
}

/// Where a secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSourceKind {
    /// A file of the secrets directory.
    File,
    /// An environment variable.
    Env,
    /// The encrypted store.
    Store,
    /// Nowhere.
    None,
}

/// Where a secret was read from, or every place it was looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretLocation {
    /// The file, variable or store entry it was read from.
    Found(String),
    /// Where it was looked for, in order, when it was not found.
    Searched(Vec<String>),
}

/// The status of one secret: never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretStatus {
    /// Owning tenant.
    pub tenant: String,
    /// Secret name.
    pub name: String,
    /// Usable or why not.
    pub status: SecretState,
    /// Which source it came from.
    pub source: SecretSourceKind,
    /// Where.
    pub location: SecretLocation,
    /// Keyed hash prefix of the value: tells versions apart without revealing either.
    pub fingerprint: Option<String>,
    /// When it was read.
    pub loaded_at_ms: u64,
    /// When a reload last saw a new value.
    pub rotated_at_ms: Option<u64>,
    /// When it expires (store metadata, or a JWT's `exp`).
    pub expires_at_ms: Option<u64>,
    /// When a request last carried it.
    pub last_used_at_ms: Option<u64>,
    /// Requests that carried it.
    pub use_count: u64,
    /// The last 401/403 an upstream answered to a request carrying it.
    pub last_upstream_auth_failure: Option<AuthFailure>,
    /// Routes that reference it.
    pub routes: Vec<String>,
}

/// An upstream's refusal of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailure {
    /// When.
    pub at_ms: u64,
    /// 401 or 403.
    pub status: u16,
}

/// The token exchange state of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeStatus {
    /// Owning tenant.
    pub tenant: String,
    /// Route name.
    pub route: String,
    /// Until when the cached token is used (`None`: no token cached).
    pub token_cached_until_ms: Option<u64>,
    /// When the last exchange finished.
    pub last_exchange_at_ms: Option<u64>,
    /// Exchanges performed since the process started.
    pub exchanges: u64,
    /// Why the last exchange failed, if it did (never a secret or token).
    pub last_error: Option<String>,
}

// === tunnels ===

/// `GET /api/v1/tunnels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tunnels {
    /// Every configured tunnel.
    pub tunnels: Vec<TunnelStatus>,
}

/// Whether a tunnel can carry requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelState {
    /// At least one agent is connected.
    Online,
    /// Every agent left less than the grace window ago (503 `tunnel_reconnecting`).
    Reconnecting,
    /// No agent (502 `tunnel_offline`).
    Offline,
}

/// One tunnel and its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// Tunnel name.
    pub name: String,
    /// Owning tenant.
    pub tenant: String,
    /// Online, reconnecting or offline.
    pub state: TunnelState,
    /// Routes that use it.
    pub routes: Vec<String>,
    /// Connected agents.
    pub agents: Vec<AgentStatus>,
}

/// One connected agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's stable id.
    pub id: String,
    /// The agent's version.
    pub version: String,
    /// Where it connected from.
    pub remote_addr: String,
    /// When it connected.
    pub connected_since_ms: u64,
    /// Streams open now.
    pub open_streams: u64,
    /// Bytes sent to the agent.
    pub bytes_to_agent: u64,
    /// Bytes received from the agent.
    pub bytes_from_agent: u64,
    /// When the last heartbeat arrived.
    pub last_heartbeat_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_use_the_documented_spellings() {
        let json = serde_json::to_string(&(
            ReloadResult::Success,
            ReloadTrigger::Sighup,
            AuditPolicy::FailClosed,
            AuthMode::Passthrough,
            SecretState::Undecryptable,
            TunnelState::Reconnecting,
        ))
        .expect("serialises");
        assert_eq!(
            json,
            r#"["success","sighup","fail_closed","passthrough","undecryptable","reconnecting"]"#
        );
    }

    #[test]
    fn a_secret_location_is_a_string_or_the_places_searched() {
        let found: SecretLocation = serde_json::from_str(r#""/run/secrets/acme/pd""#).expect("ok");
        assert_eq!(found, SecretLocation::Found("/run/secrets/acme/pd".into()));
        let searched: SecretLocation =
            serde_json::from_str(r#"["/run/secrets/acme/pd","$PORTCULLIS_SECRET_ACME_PD"]"#)
                .expect("ok");
        assert!(matches!(searched, SecretLocation::Searched(ref v) if v.len() == 2));
    }

    #[test]
    fn fields_added_later_default_when_absent() {
        let listeners: Listeners = serde_json::from_str(
            r#"{"http":["127.0.0.1:8080"],"https":[],"admin":"127.0.0.1:9901"}"#,
        )
        .expect("an older gateway's listeners parse");
        assert_eq!(listeners.tunnel, None);
    }
}
