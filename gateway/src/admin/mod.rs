//! The admin API: its own listener (loopback by default), a bearer token compared in constant
//! time, JSON everywhere (the `portcullis-api` types), and `/metrics` for Prometheus.
//!
//! Endpoints: `GET /metrics`, `GET /api/v1/status`, `GET /api/v1/routes`,
//! `GET /api/v1/traffic?after=SEQ&limit=N`, `GET /api/v1/secrets`, `GET /api/v1/tunnels`,
//! `POST /api/v1/reload`.
//! It reports status; it never returns a secret value or a header value.
//!
//! Only requests whose `Host` names the admin listener are answered: `localhost`, an IP
//! literal (the listener's own address; any when it listens on all of them), or a name in
//! `[admin] hosts`; anything else gets 421 `misdirected_request`. Loopback is trusted for
//! `/metrics`, so without this a web page could read it through DNS rebinding (its own name
//! resolving to 127.0.0.1, the browser sending that name as `Host`).

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, StatusCode};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::ErrorType;
use portcullis_api::{paths, ApiError, ReloadResult, ReloadTrigger, MAX_TRAFFIC_LIMIT};
use serde::Serialize;

use crate::conn::GuardedStream;
use crate::control::Reloader;

mod views;

/// The admin API service.
pub(crate) struct AdminApi {
    reloader: Arc<Reloader>,
}

/// A response under construction.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

// === impl AdminApi ===

impl AdminApi {
    /// The admin API over the control plane of `reloader`.
    pub(crate) fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let runtime = self.reloader.shared().runtime.load();
        let Some(expected) = &runtime.admin_token else {
            return false;
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        !presented.is_empty() && expected.matches(presented.as_bytes())
    }

    fn host_allowed(&self, session: &ServerSession) -> bool {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let runtime = self.reloader.shared().runtime.load();
        host.is_some_and(|host| {
            host_allowed(
                host,
                self.reloader.shared().listeners.admin.ip(),
                &runtime.config.admin.hosts,
            )
        })
    }

    fn metrics_allowed_without_token(&self, peer: Option<IpAddr>) -> bool {
        let runtime = self.reloader.shared().runtime.load();
        metrics_open_to(peer, &runtime.config.admin.metrics_cidrs)
    }

    async fn route(&self, session: &mut ServerSession) -> Reply {
        if !self.host_allowed(session) {
            return Reply::error(StatusCode::MISDIRECTED_REQUEST, "misdirected_request");
        }
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if path == paths::METRICS {
            if method != Method::GET {
                return Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
            }
            if !self.metrics_allowed_without_token(peer) && !self.authorized(session) {
                return Reply::error(StatusCode::UNAUTHORIZED, "unauthorized");
            }
            self.sync_audit_counters();
            let shared = self.reloader.shared();
            shared.tunnels.sync_metrics(&shared.runtime.load());
            return Reply {
                status: StatusCode::OK,
                content_type: crate::observe::metrics::CONTENT_TYPE,
                body: self
                    .reloader
                    .shared()
                    .recorders
                    .metrics
                    .encode()
                    .into_bytes(),
            };
        }
        let known = [
            paths::STATUS,
            paths::ROUTES,
            paths::TRAFFIC,
            paths::SECRETS,
            paths::TUNNELS,
            paths::RELOAD,
        ]
        .contains(&path.as_str());
        if !known {
            return Reply::error(StatusCode::NOT_FOUND, "not_found");
        }
        if !self.authorized(session) {
            let runtime = self.reloader.shared().runtime.load();
            let code = if runtime.admin_token.is_none() {
                "admin_token_not_configured"
            } else {
                "unauthorized"
            };
            return Reply::error(StatusCode::UNAUTHORIZED, code);
        }
        let reloader = &self.reloader;
        match (method, path.as_str()) {
            (Method::GET, paths::STATUS) => Reply::json(StatusCode::OK, &views::status(reloader)),
            (Method::GET, paths::ROUTES) => Reply::json(StatusCode::OK, &views::routes(reloader)),
            (Method::GET, paths::SECRETS) => Reply::json(StatusCode::OK, &views::secrets(reloader)),
            (Method::GET, paths::TUNNELS) => Reply::json(StatusCode::OK, &views::tunnels(reloader)),
            (Method::GET, paths::TRAFFIC) => match parse_traffic_query(&query) {
                Ok((after, limit)) => {
                    let page = reloader.shared().recorders.traffic.after(after, limit);
                    Reply::json(StatusCode::OK, &page)
                }
                Err(message) => Reply::json(
                    StatusCode::BAD_REQUEST,
                    &ApiError {
                        error: "bad_request".into(),
                        message: Some(message),
                    },
                ),
            },
            (Method::POST, paths::RELOAD) => {
                let status = reloader.reload(ReloadTrigger::Api).await;
                let code = match status.result {
                    ReloadResult::Success => StatusCode::OK,
                    ReloadResult::Error => StatusCode::UNPROCESSABLE_ENTITY,
                };
                Reply::json(code, &*status)
            }
            _ => Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The audit writer counts in its own atomics; bring the exported counters up to them.
    fn sync_audit_counters(&self) {
        let recorders = &self.reloader.shared().recorders;
        let stats = recorders.audit.stats();
        for (counter, value) in [
            (recorders.metrics.audit_written(), stats.written),
            (recorders.metrics.audit_dropped(), stats.dropped),
        ] {
            let exported = counter.get();
            if value > exported {
                counter.inc_by(value - exported);
            }
        }
    }
}

/// Whether a peer may scrape `/metrics` without the token: loopback, or inside the configured
/// CIDRs. An unknown peer may not (fail closed).
fn metrics_open_to(peer: Option<IpAddr>, cidrs: &portcullis_allowlist::CidrSet) -> bool {
    let Some(ip) = peer else { return false };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || cidrs.contains(ip)
}

/// Whether a `Host` value names the admin listener bound to `own`: `localhost`, an IP literal
/// equal to `own` (any IP literal when `own` is unspecified: an address is never the result
/// of DNS rebinding), or one of `names` (lowercase). The port is not compared (port
/// forwarding changes it).
fn host_allowed(host: &str, own: IpAddr, names: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) if rest.is_empty() || rest.starts_with(':') => ip,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Ok(ip) = name.parse::<IpAddr>() {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        return own.is_unspecified() || ip == own;
    }
    name.eq_ignore_ascii_case("localhost") || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// `after=SEQ&limit=N`, both optional; anything else is an error.
fn parse_traffic_query(query: &str) -> Result<(u64, usize), String> {
    let mut after = 0;
    let mut limit = 100;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "after" => {
                after = value
                    .parse()
                    .map_err(|_| format!("after: '{value}' is not a sequence number"))?
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_TRAFFIC_LIMIT).contains(l))
                    .ok_or_else(|| format!("limit: '{value}' is not in 1..={MAX_TRAFFIC_LIMIT}"))?
            }
            other => return Err(format!("unknown parameter '{other}'")),
        }
    }
    Ok((after, limit))
}

// === impl Reply ===

impl Reply {
    fn json(status: StatusCode, value: &impl Serialize) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(value).unwrap_or_default(),
        }
    }

    fn error(status: StatusCode, code: &str) -> Self {
        Self::json(
            status,
            &ApiError {
                error: code.to_owned(),
                message: None,
            },
        )
    }
}

/// Pingora's `ServeHttp` adapter, with two differences an admin listener needs: a head Pingora
/// cannot parse gets the JSON `bad_request` answer (written by `conn`) instead of a silent
/// close, and nothing logs the raw head (Pingora's adapter logs its parse error, raw bytes and
/// all, at `error`: a malformed request carrying a bearer token would put the token in the log).
/// Also, keep-alive follows `server.keepalive_timeout` as on the public listener.
#[async_trait]
impl HttpServerApp for AdminApi {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                // The kind only: the error's context is the raw head.
                tracing::debug!(error = e.etype().as_str(), "admin: malformed request head");
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    // `conn` recognises Pingora's 400 and writes ours in its place.
                    let _ = session.respond_error(400).await;
                }
                return None;
            }
        }
        // The head is in: its deadline stops here (see `conn`); the next one starts with the
        // next request's first byte.
        if let Some(stream) = GuardedStream::of(&session) {
            stream.head_received();
        }
        let keepalive = self
            .reloader
            .shared()
            .runtime
            .load()
            .config
            .server
            .keepalive_timeout;
        if *shutdown.borrow() || keepalive.is_zero() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(keepalive.as_millis().div_ceil(1000) as u64));
        }
        // Admin requests carry no body we need; read and discard any, bounded.
        let mut read = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            read += chunk.len();
            if read > 64 * 1024 {
                session.set_keepalive(None);
                break;
            }
        }
        let reply = self.route(&mut session).await;
        let mut head = ResponseHeader::build(reply.status, Some(4)).ok()?;
        head.insert_header("content-type", reply.content_type)
            .ok()?;
        head.insert_header("content-length", reply.body.len())
            .ok()?;
        head.insert_header("cache-control", "no-store").ok()?;
        if let Err(e) = session.write_response_header(Box::new(head)).await {
            tracing::debug!(
                error = e.etype().as_str(),
                "admin: could not write the response"
            );
            return None;
        }
        if !reply.body.is_empty() {
            if let Err(e) = session.write_response_body(reply.body.into(), true).await {
                tracing::debug!(
                    error = e.etype().as_str(),
                    "admin: could not write the response"
                );
                return None;
            }
        }
        if let Some(stream) = GuardedStream::of(&session) {
            stream.request_done();
        }
        let persistent = HttpPersistentSettings::for_session(&session);
        let reused = session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reused, persistent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_open_to_loopback_and_configured_cidrs_only() {
        let cidrs = portcullis_allowlist::CidrSet::parse(["10.0.0.0/8"]).unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(metrics_open_to(ip("127.0.0.1"), &cidrs));
        assert!(metrics_open_to(ip("::1"), &cidrs));
        assert!(metrics_open_to(ip("::ffff:127.0.0.1"), &cidrs));
        assert!(metrics_open_to(ip("10.1.2.3"), &cidrs));
        assert!(!metrics_open_to(ip("192.0.2.1"), &cidrs));
        assert!(!metrics_open_to(ip("2001:db8::1"), &cidrs));
        assert!(!metrics_open_to(None, &cidrs));
    }

    #[test]
    fn only_the_admin_listeners_own_names_are_answered() {
        let names = vec!["gw-admin.internal".to_owned()];
        let own: IpAddr = "127.0.0.1".parse().unwrap();
        for ok in [
            "localhost",
            "LOCALHOST:9901",
            "localhost.",
            "127.0.0.1:9901",
            "127.0.0.1",
            "gw-admin.internal:19901",
            "GW-Admin.Internal",
        ] {
            assert!(host_allowed(ok, own, &names), "{ok}");
        }
        for refused in [
            "evil.example:9901",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "10.0.0.1:9901",
            "[::1]:9901",
            "",
            "[::1",
            "gw-admin.internal.evil",
        ] {
            assert!(!host_allowed(refused, own, &names), "{refused}");
        }
        let any: IpAddr = "::".parse().unwrap();
        assert!(host_allowed("[2001:db8::1]:9901", any, &[]));
        assert!(host_allowed("192.0.2.7", any, &[]));
        assert!(!host_allowed("rebind.example", any, &[]));
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(host_allowed("[::1]:9901", v6, &[]));
    }

    #[test]
    fn traffic_query_parses_and_rejects() {
        assert_eq!(parse_traffic_query(""), Ok((0, 100)));
        assert_eq!(parse_traffic_query("after=5&limit=10"), Ok((5, 10)));
        assert!(parse_traffic_query("after=x")
            .unwrap_err()
            .contains("after"));
        assert!(parse_traffic_query("limit=0").is_err());
        assert!(parse_traffic_query("limit=100000").is_err());
        assert!(parse_traffic_query("foo=1")
            .unwrap_err()
            .contains("unknown parameter 'foo'"));
    }
}
