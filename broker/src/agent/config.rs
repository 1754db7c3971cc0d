//! `agent.toml`: parsed strictly, validated with every error's file:line:column, then compiled
//! into an [`AgentConfig`] the agent runs on without checking anything again.
//!
//! ```toml
//! gateways = ["gw1.example.com:7443", "10.0.0.5:7443"]  # every instance; names: every address
//! token_file = "/etc/portcullis-agent/token"
//! ca_file = "/etc/portcullis-agent/gateway-ca.pem"      # else the system roots
//! audit = "/var/log/portcullis-agent/audit.jsonl"       # JSON lines; omit to disable
//! # agent_id = "dc1-agent-a"     # else derived: <hostname>-<hash of machine-id, hostname, config path>
//! # transport = "tls"            # "tls" (default), "websocket", or "auto" (tls, then websocket)
//! # proxy = "http://proxy:3128"  # else HTTPS_PROXY / https_proxy, honouring NO_PROXY / no_proxy
//! # insecure_plaintext = false   # tests only: no TLS to the gateway
//!
//! [heartbeat]                    # optional
//! interval_ms = 3000
//! timeout_ms = 9000
//!
//! [backoff]                      # optional: jittered exponential reconnect delays
//! initial_ms = 500
//! max_ms = 30000
//!
//! [[origins]]
//! name = "sonar"                 # the Host the gateway sends (route target "http://sonar")
//! url = "http://10.1.2.3:9000"   # http, https (optionally with a base path) or tcp://host:port
//! headers = { Authorization = "Bearer ${env:SONAR_TOKEN}" }  # ${env:NAME}, ${file:PATH}
//! # ca_file = "internal-ca.pem"  # https origins: else the system roots
//! # connect_timeout_ms = 5000
//! # response_timeout_ms = 60000  # until the response headers
//! [[origins.accept]]             # none: everything is accepted
//! methods = ["GET"]
//! path = "/api/**"
//! query = { project = "acme-*" } # optional: every named parameter must match its glob
//! headers = { X-Project = "acme-*" } # optional: every named header must match its glob
//! ```
//!
//! Relative paths are relative to the config file's directory. Header values are resolved at
//! load and kept in [`SecretString`]s; no error message ever contains a resolved value.
//!
//! The agent id, when not configured, is derived rather than persisted so that a read-only
//! install still has a stable one: the same host and config file always give the same id, and
//! two agents on one host (two config files) get different ids.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use portcullis_allowlist::{AcceptRule, AcceptRules};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::protocol::frame::Token;
use crate::protocol::proxy::ProxyConfig;
use crate::protocol::transport;

#[cfg(test)]
mod tests;

/// Headers an origin may not set: the agent's HTTP machinery owns them.
const NOT_INJECTABLE: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
];

/// A validated, compiled agent configuration.
#[derive(Debug)]
pub struct AgentConfig {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Every gateway to keep a connection to (each address a name resolves to, too).
    pub gateways: Vec<GatewayAddr>,
    /// The broker token.
    pub token: Token,
    /// TLS settings for the gateways; `None` with `insecure_plaintext`.
    pub gateway_tls: Option<Arc<rustls::ClientConfig>>,
    /// The audit log file, if any.
    pub audit: Option<PathBuf>,
    /// This agent's stable id.
    pub agent_id: String,
    /// Which transport to use.
    pub transport: TransportChoice,
    /// A proxy set in the file; `None` means the environment decides.
    pub proxy: Option<ProxyConfig>,
    /// Heartbeat settings.
    pub heartbeat: HeartbeatConfig,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// The origins, in file order.
    pub origins: Vec<Origin>,
    by_name: HashMap<String, usize>,
}

/// One gateway address as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddr {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// The tunnel port.
    pub port: u16,
}

/// `transport = …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportChoice {
    /// The binary protocol on TLS.
    Tls,
    /// WebSocket-over-TLS.
    WebSocket,
    /// TLS first; WebSocket when the binary transport cannot be set up.
    Auto,
}

/// `[heartbeat]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// How often to ping (the gateway's interval is used when shorter).
    pub interval: Duration,
    /// How long without a byte before the connection is considered dead.
    pub timeout: Duration,
}

/// `[backoff]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

/// One origin the agent may reach.
#[derive(Debug)]
pub struct Origin {
    /// Its name: the `Host` the gateway sends, or the `origin` of a `tcp` stream.
    pub name: String,
    /// HTTP(S) or TCP, with what each needs.
    pub kind: OriginKind,
    /// Deadline for connecting to the origin.
    pub connect_timeout: Duration,
    /// Deadline for the origin's response headers (HTTP only).
    pub response_timeout: Duration,
}

/// What kind of origin, with its settings.
#[derive(Debug)]
pub enum OriginKind {
    /// An HTTP or HTTPS API.
    Http(HttpOrigin),
    /// A TCP service.
    Tcp {
        /// Host to connect to.
        host: String,
        /// Port to connect to.
        port: u16,
    },
}

/// The settings of an HTTP(S) origin.
#[derive(Debug)]
pub struct HttpOrigin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host[:port]`, also sent as `Host`.
    pub authority: http::uri::Authority,
    /// A base path prepended to every request path (no trailing `/`; empty for none).
    pub base_path: String,
    /// Headers injected into every request, replacing any copy the caller sent.
    pub headers: Vec<(HeaderName, SecretString)>,
    /// What is let through; empty accepts everything.
    pub accept: AcceptRules,
    /// TLS settings for `https` (origin `ca_file`, else system roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One problem in the config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a config could not be loaded: every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is invalid; one line per problem.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateways: Spanned<Vec<Spanned<String>>>,
    token_file: Spanned<String>,
    ca_file: Option<Spanned<String>>,
    audit: Option<Spanned<String>>,
    agent_id: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
    #[serde(default)]
    insecure_plaintext: bool,
    heartbeat: Option<Spanned<RawHeartbeat>>,
    backoff: Option<Spanned<RawBackoff>>,
    #[serde(default)]
    origins: Vec<Spanned<RawOrigin>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    response_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    accept: Vec<Spanned<RawAccept>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccept {
    #[serde(default)]
    methods: Vec<String>,
    path: Spanned<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

struct Reporter<'a> {
    file: &'a Path,
    source: &'a str,
    diagnostics: Vec<Diagnostic>,
}

// === impl AgentConfig ===

impl AgentConfig {
    /// Reads and compiles a config file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with every problem and its location.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        AgentConfig::compile(path, &source)
    }

    /// Compiles config text; `file` names it in errors and anchors relative paths.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem and its location.
    pub fn compile(file: &Path, source: &str) -> Result<AgentConfig, ConfigError> {
        let mut r = Reporter {
            file,
            source,
            diagnostics: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(source) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                r.error(span, e.message().trim().replace('\n', " "));
                return Err(r.finish());
            }
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let config = compile_raw(&mut r, raw, file, &base);
        if r.diagnostics.is_empty() {
            config.ok_or_else(|| r.finish())
        } else {
            Err(r.finish())
        }
    }

    /// The origin with this name (names are lowercase; compare the lowercased `Host`).
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.by_name.get(name).map(|&i| &self.origins[i])
    }
}

fn compile_raw(
    r: &mut Reporter<'_>,
    raw: RawConfig,
    file: &Path,
    base: &Path,
) -> Option<AgentConfig> {
    let gateways = compile_gateways(r, &raw.gateways);
    let token = read_token(r, &raw.token_file, base);
    let gateway_tls = if raw.insecure_plaintext {
        None
    } else {
        let ca = raw
            .ca_file
            .as_ref()
            .map(|ca| (resolve_path(base, ca.get_ref()), ca.span()));
        match transport::client_config(ca.as_ref().map(|(p, _)| p.as_path()), false) {
            Ok(config) => Some(config),
            Err(e) => {
                let span = ca.map_or(0..0, |(_, s)| s);
                r.error(span, format!("ca_file: {e}"));
                None
            }
        }
    };
    let audit = raw.audit.as_ref().map(|a| resolve_path(base, a.get_ref()));
    let agent_id = match &raw.agent_id {
        Some(id) => {
            let v = id.get_ref();
            if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
                r.error(id.span(), "agent_id must be 1 to 128 printable characters");
            }
            v.clone()
        }
        None => derived_agent_id(file),
    };
    let transport = match raw
        .transport
        .as_ref()
        .map(|t| (t.get_ref().as_str(), t.span()))
    {
        None | Some(("tls", _)) => TransportChoice::Tls,
        Some(("websocket", _)) => TransportChoice::WebSocket,
        Some(("auto", _)) => TransportChoice::Auto,
        Some((other, span)) => {
            r.error(span, format!("transport: unknown value '{other}', expected \"tls\", \"websocket\" or \"auto\""));
            TransportChoice::Tls
        }
    };
    let proxy = raw
        .proxy
        .as_ref()
        .and_then(|p| match ProxyConfig::parse(p.get_ref()) {
            Ok(proxy) => Some(proxy),
            Err(e) => {
                r.error(p.span(), format!("proxy: {e}"));
                None
            }
        });
    let heartbeat = compile_heartbeat(r, raw.heartbeat.as_ref());
    let backoff = compile_backoff(r, raw.backoff.as_ref());
    let mut origins = Vec::new();
    let mut by_name = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for origin in &raw.origins {
        let name = &origin.get_ref().name;
        if !seen.insert(name.get_ref().clone()) {
            r.error(
                name.span(),
                format!("origin '{}' is defined twice", name.get_ref()),
            );
        }
        if let Some(compiled) = compile_origin(r, origin.get_ref(), base) {
            by_name.insert(compiled.name.clone(), origins.len());
            origins.push(compiled);
        }
    }
    if raw.origins.is_empty() {
        r.error(0..0, "no [[origins]]: the agent would refuse every request");
    }
    Some(AgentConfig {
        path: file.to_path_buf(),
        gateways,
        token: token?,
        gateway_tls,
        audit,
        agent_id,
        transport,
        proxy,
        heartbeat,
        backoff,
        origins,
        by_name,
    })
}

fn compile_gateways(
    r: &mut Reporter<'_>,
    gateways: &Spanned<Vec<Spanned<String>>>,
) -> Vec<GatewayAddr> {
    if gateways.get_ref().is_empty() {
        r.error(
            gateways.span(),
            "gateways: at least one \"host:port\" is required",
        );
    }
    let mut out = Vec::new();
    for g in gateways.get_ref() {
        match parse_host_port(g.get_ref()) {
            Some(addr) => out.push(addr),
            None => r.error(
                g.span(),
                format!(
                    "gateways: '{}' is not \"host:port\" (IPv6 as \"[::1]:7443\")",
                    g.get_ref()
                ),
            ),
        }
    }
    out
}

fn parse_host_port(s: &str) -> Option<GatewayAddr> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = s.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return None;
    }
    Some(GatewayAddr {
        host: host.to_owned(),
        port,
    })
}

fn read_token(r: &mut Reporter<'_>, token_file: &Spanned<String>, base: &Path) -> Option<Token> {
    let path = resolve_path(base, token_file.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                r.error(
                    token_file.span(),
                    format!("token_file '{}' is empty", path.display()),
                );
                None
            } else {
                Some(Token::new(token))
            }
        }
        Err(e) => {
            r.error(
                token_file.span(),
                format!("cannot read token_file '{}': {e}", path.display()),
            );
            None
        }
    }
}

fn compile_heartbeat(r: &mut Reporter<'_>, raw: Option<&Spanned<RawHeartbeat>>) -> HeartbeatConfig {
    let interval = raw.and_then(|h| h.get_ref().interval_ms).unwrap_or(3000);
    let timeout = raw.and_then(|h| h.get_ref().timeout_ms).unwrap_or(9000);
    if let Some(h) = raw {
        if interval == 0 || timeout == 0 || interval >= timeout || timeout > 600_000 {
            r.error(
                h.span(),
                "heartbeat: need 0 < interval_ms < timeout_ms <= 600000 (e.g. 3000 and 9000)",
            );
        }
    }
    HeartbeatConfig {
        interval: Duration::from_millis(interval.max(1)),
        timeout: Duration::from_millis(timeout.max(2)),
    }
}

fn compile_backoff(r: &mut Reporter<'_>, raw: Option<&Spanned<RawBackoff>>) -> BackoffConfig {
    let initial = raw.and_then(|b| b.get_ref().initial_ms).unwrap_or(500);
    let max = raw.and_then(|b| b.get_ref().max_ms).unwrap_or(30_000);
    if let Some(b) = raw {
        if initial == 0 || initial > max || max > 3_600_000 {
            r.error(
                b.span(),
                "backoff: need 0 < initial_ms <= max_ms <= 3600000",
            );
        }
    }
    BackoffConfig {
        initial: Duration::from_millis(initial.max(1)),
        max: Duration::from_millis(max.max(initial).max(1)),
    }
}

fn compile_origin(r: &mut Reporter<'_>, raw: &RawOrigin, base: &Path) -> Option<Origin> {
    let errors_before = r.diagnostics.len();
    let name = raw.name.get_ref().clone();
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if !valid_name {
        r.error(
            raw.name.span(),
            format!("origin name '{name}' must be 1-63 characters of a-z, 0-9, '-', '_', '.'"),
        );
    }
    let timeout = |v: &Option<Spanned<u64>>, default: u64, what: &str, r: &mut Reporter<'_>| {
        let ms = v.as_ref().map_or(default, |v| *v.get_ref());
        if let Some(v) = v {
            if ms == 0 || ms > 3_600_000 {
                r.error(v.span(), format!("{what}: must be between 1 and 3600000"));
            }
        }
        Duration::from_millis(ms.max(1))
    };
    let connect_timeout = timeout(&raw.connect_timeout_ms, 5_000, "connect_timeout_ms", r);
    let response_timeout = timeout(&raw.response_timeout_ms, 60_000, "response_timeout_ms", r);
    let url = raw.url.get_ref();
    let uri: Option<http::Uri> = url.parse().ok();
    let kind = match uri.as_ref().and_then(|u| u.scheme_str().map(|s| (s, u))) {
        Some(("tcp", uri)) => {
            if !raw.headers.is_empty() || !raw.accept.is_empty() || raw.ca_file.is_some() {
                r.error(
                    raw.url.span(),
                    "a tcp:// origin takes no headers, accept rules or ca_file",
                );
            }
            if raw.response_timeout_ms.is_some() {
                r.error(
                    raw.url.span(),
                    "response_timeout_ms applies to HTTP origins only",
                );
            }
            match (uri.host(), uri.port_u16(), uri.path()) {
                (Some(host), Some(port), "" | "/") if uri.query().is_none() => {
                    Some(OriginKind::Tcp {
                        host: host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned(),
                        port,
                    })
                }
                _ => {
                    r.error(
                        raw.url.span(),
                        format!("url '{url}': a tcp origin is tcp://host:port"),
                    );
                    None
                }
            }
        }
        Some((scheme @ ("http" | "https"), uri)) => {
            compile_http_origin(r, raw, uri, scheme == "https", base)
        }
        _ => {
            r.error(
                raw.url.span(),
                format!("url '{url}': expected http://, https:// or tcp:// with a host"),
            );
            None
        }
    };
    if r.diagnostics.len() > errors_before {
        return None;
    }
    Some(Origin {
        name,
        kind: kind?,
        connect_timeout,
        response_timeout,
    })
}

fn compile_http_origin(
    r: &mut Reporter<'_>,
    raw: &RawOrigin,
    uri: &http::Uri,
    https: bool,
    base: &Path,
) -> Option<OriginKind> {
    let url = raw.url.get_ref();
    let Some(authority) = uri.authority().cloned() else {
        r.error(raw.url.span(), format!("url '{url}' has no host"));
        return None;
    };
    if authority.as_str().contains('@') {
        r.error(
            raw.url.span(),
            "url: credentials in the URL are not allowed; use headers",
        );
    }
    if uri.query().is_some() {
        r.error(raw.url.span(), format!("url '{url}' must not have a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if NOT_INJECTABLE.contains(&h.as_str()) => {
                r.error(
                    value.span(),
                    format!("headers: '{name}' is managed by the agent and cannot be set"),
                );
                continue;
            }
            Ok(h) => h,
            Err(_) => {
                r.error(
                    value.span(),
                    format!("headers: '{name}' is not a valid header name"),
                );
                continue;
            }
        };
        match resolve_template(value.get_ref(), base) {
            Ok(resolved) => {
                if HeaderValue::from_str(resolved.expose_secret()).is_err() {
                    r.error(
                        value.span(),
                        format!("headers.{name}: the resolved value is not a valid header value (control characters or non-ASCII?)"),
                    );
                } else {
                    headers.push((header, resolved));
                }
            }
            Err(message) => r.error(value.span(), format!("headers.{name}: {message}")),
        }
    }
    let mut rules = Vec::new();
    for rule in &raw.accept {
        let rule = rule.get_ref();
        let query: Vec<(&str, &str)> = rule
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let headers: Vec<(&str, &str)> = rule
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match AcceptRule::new(&rule.methods, rule.path.get_ref(), &query)
            .and_then(|compiled| compiled.with_headers(&headers))
        {
            Ok(compiled) => rules.push(compiled),
            Err(e) => r.error(rule.path.span(), format!("accept: {e}")),
        }
    }
    let tls = if https {
        let ca = raw
            .ca_file
            .as_ref()
            .map(|c| resolve_path(base, c.get_ref()));
        match transport::client_config(ca.as_deref(), true) {
            Ok(config) => Some(config),
            Err(e) => {
                let span = raw.ca_file.as_ref().map_or(raw.url.span(), Spanned::span);
                r.error(span, format!("ca_file: {e}"));
                None
            }
        }
    } else {
        if let Some(ca) = &raw.ca_file {
            r.error(ca.span(), "ca_file applies to https:// origins only");
        }
        None
    };
    Some(OriginKind::Http(HttpOrigin {
        scheme: if https {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        },
        authority,
        base_path,
        headers,
        accept: AcceptRules::new(rules),
        tls,
    }))
}

/// Resolves `${env:NAME}` and `${file:PATH}` in a header value. Errors name the variable or
/// file, never a value.
fn resolve_template(template: &str, base: &Path) -> Result<SecretString, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated '${' (expected ${env:NAME} or ${file:PATH})".to_owned())?;
        let reference = &after[..end];
        match reference.split_once(':') {
            Some(("env", name)) if !name.is_empty() => match std::env::var(name) {
                Ok(value) => out.push_str(&value),
                Err(_) => return Err(format!("environment variable {name} is not set")),
            },
            Some(("file", path)) if !path.is_empty() => {
                let path = resolve_path(base, path);
                match std::fs::read_to_string(&path) {
                    Ok(value) => out.push_str(value.trim_end_matches(['\n', '\r'])),
                    Err(e) => return Err(format!("cannot read '{}': {e}", path.display())),
                }
            }
            _ => {
                return Err(format!(
                    "unknown reference '${{{reference}}}': expected ${{env:NAME}} or ${{file:PATH}}"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(SecretString::from(out))
}

fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// `<hostname>-<12 hex digits of sha256(machine-id, hostname, canonical config path)>`.
fn derived_agent_id(config_path: &Path) -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).ok();
    let hostname = read("/proc/sys/kernel/hostname")
        .or_else(|| read("/etc/hostname"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".into());
    let hostname: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let machine_id = read("/etc/machine-id").unwrap_or_default();
    let config = std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let mut hasher = Sha256::new();
    hasher.update(b"portcullis-agent-id\0");
    hasher.update(machine_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(hostname.as_bytes());
    hasher.update(b"\0");
    hasher.update(config.to_string_lossy().as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("{hostname}-{}", &digest[..12])
}

// === impl Reporter ===

impl Reporter<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = span.start.min(self.source.len());
        let mut boundary = offset;
        while boundary > 0 && !self.source.is_char_boundary(boundary) {
            boundary -= 1;
        }
        let before = &self.source[..boundary];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    fn finish(&mut self) -> ConfigError {
        let mut diagnostics = std::mem::take(&mut self.diagnostics);
        diagnostics.sort_by_key(|d| (d.line, d.column));
        ConfigError::Invalid(diagnostics)
    }
}

// === impl Diagnostic ===

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
