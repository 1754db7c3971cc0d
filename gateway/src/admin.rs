//! The admin API: its own listener (loopback by default), a bearer token compared in constant
//! time, JSON everywhere, and `/metrics` for Prometheus.
//!
//! Endpoints: `GET /metrics`, `GET /api/v1/status`, `GET /api/v1/routes`,
//! `GET /api/v1/traffic?after=SEQ&limit=N`, `GET /api/v1/secrets`, `POST /api/v1/reload`.
//! It reports status; it never returns a secret value or a header value.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::control::Reloader;
use crate::secrets::SecretSource;

/// The largest `limit` of `/api/v1/traffic`.
const MAX_TRAFFIC_LIMIT: usize = 1000;

/// The admin API service.
pub struct AdminApi {
    reloader: Arc<Reloader>,
}

/// A JSON response under construction.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

// === impl AdminApi ===

impl AdminApi {
    /// The admin API over the control plane of `reloader`.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let runtime = self.reloader.shared().runtime.load();
        let Some(expected) = runtime.admin_token_sha256 else {
            return false;
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let digest = Sha256::digest(presented.as_bytes());
        !presented.is_empty() && bool::from(digest.as_slice().ct_eq(&expected))
    }

    fn metrics_allowed_without_token(&self, peer: Option<IpAddr>) -> bool {
        let runtime = self.reloader.shared().runtime.load();
        metrics_open_to(peer, &runtime.config.admin.metrics_cidrs)
    }

    async fn route(&self, session: &mut ServerSession) -> Reply {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        let query = session.req_header().uri.query().unwrap_or("").to_owned();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if path == "/metrics" {
            if method != Method::GET {
                return Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
            }
            if !self.metrics_allowed_without_token(peer) && !self.authorized(session) {
                return Reply::error(StatusCode::UNAUTHORIZED, "unauthorized");
            }
            self.sync_audit_counters();
            return Reply {
                status: StatusCode::OK,
                content_type: crate::metrics::CONTENT_TYPE,
                body: self.reloader.shared().metrics.encode().into_bytes(),
            };
        }
        let known = matches!(
            path.as_str(),
            "/api/v1/status"
                | "/api/v1/routes"
                | "/api/v1/traffic"
                | "/api/v1/secrets"
                | "/api/v1/reload"
        );
        if !known {
            return Reply::error(StatusCode::NOT_FOUND, "not_found");
        }
        if !self.authorized(session) {
            let runtime = self.reloader.shared().runtime.load();
            let code = if runtime.admin_token_sha256.is_none() {
                "admin_token_not_configured"
            } else {
                "unauthorized"
            };
            return Reply::error(StatusCode::UNAUTHORIZED, code);
        }
        match (method, path.as_str()) {
            (Method::GET, "/api/v1/status") => Reply::json(StatusCode::OK, &self.status()),
            (Method::GET, "/api/v1/routes") => Reply::json(StatusCode::OK, &self.routes()),
            (Method::GET, "/api/v1/secrets") => Reply::json(StatusCode::OK, &self.secrets()),
            (Method::GET, "/api/v1/traffic") => match parse_traffic_query(&query) {
                Ok((after, limit)) => {
                    let page = self.reloader.shared().traffic.after(after, limit);
                    Reply::json(StatusCode::OK, &json!(page))
                }
                Err(message) => Reply::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "bad_request", "message": message}),
                ),
            },
            (Method::POST, "/api/v1/reload") => {
                let status = self.reloader.reload("api").await;
                let code = if status.result == "success" {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                Reply::json(code, &json!(*status))
            }
            _ => Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The audit writer counts in its own atomics; bring the exported counters up to them.
    fn sync_audit_counters(&self) {
        let shared = self.reloader.shared();
        let stats = shared.audit.stats();
        for (counter, value) in [
            (shared.metrics.audit_written(), stats.written),
            (shared.metrics.audit_dropped(), stats.dropped),
        ] {
            let exported = counter.get();
            if value > exported {
                counter.inc_by(value - exported);
            }
        }
    }

    fn status(&self) -> Value {
        let shared = self.reloader.shared();
        let runtime = shared.runtime.load();
        let config = &runtime.config;
        let missing = runtime
            .secrets
            .iter()
            .filter(|(_, e)| !e.is_present())
            .count();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "started_at_ms": ms(shared.started),
            "uptime_seconds": shared.started_instant.elapsed().as_secs_f64(),
            "listeners": shared.listeners,
            "config": {
                "hash": config.hash,
                "source": self.reloader.source().path().map_or_else(
                    || config.source_path.display().to_string(),
                    |p| p.display().to_string(),
                ),
                "loaded_at_ms": ms(runtime.loaded_at),
            },
            "last_reload": *self.reloader.status(),
            "egress_pools": config.egress_pools.iter().map(|p| json!({
                "name": p.name,
                "addresses": p.addresses,
                "upcoming": p.upcoming,
                "retiring": p.retiring,
            })).collect::<Vec<_>>(),
            "counts": {
                "tenants": config.tenants.len(),
                "routes": config.routes.len(),
                "secrets": runtime.secrets.iter().count(),
                "secrets_missing": missing,
                "requests": shared.traffic.last_seq(),
                "active_requests": shared.metrics.active_requests().get(),
            },
            "audit": shared.audit.stats(),
        })
    }

    fn routes(&self) -> Value {
        let runtime = self.reloader.shared().runtime.load();
        let now = Instant::now();
        let routes: Vec<Value> = runtime
            .config
            .routes
            .iter()
            .zip(&runtime.routes)
            .enumerate()
            .map(|(index, (route, state))| {
                let backends = state.upstream.backends();
                let upstreams: Vec<Value> = backends
                    .get_backend()
                    .iter()
                    .map(|b| json!({"address": b.addr.to_string(), "healthy": backends.ready(b)}))
                    .collect();
                let spec = runtime.config.table.get(portcullis_routes::RouteId(index));
                json!({
                    "name": route.name,
                    "tenant": runtime.config.tenants[route.tenant].id,
                    "host": spec.map(|s| s.host.to_string()),
                    "path": route.path_prefix.as_str(),
                    "methods": route.methods.to_string(),
                    "public": route.public,
                    "targets": route.upstream.targets().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "egress_pool": route.egress_pool.map(|i| runtime.config.egress_pools[i].name.clone()),
                    "secrets_missing": state.missing,
                    "stats": state.metrics.window(now),
                    "upstreams": upstreams,
                })
            })
            .collect();
        json!({ "routes": routes })
    }

    fn secrets(&self) -> Value {
        let shared = self.reloader.shared();
        let runtime = shared.runtime.load();
        let mut out: Vec<Value> = runtime
            .secrets
            .iter()
            .map(|((tenant, name), entry)| {
                let usage = shared.secret_usage.get(tenant, name);
                let (kind, location) = match &entry.source {
                    SecretSource::File(p) => ("file", json!(p.display().to_string())),
                    SecretSource::Env(v) => ("env", json!(v)),
                    SecretSource::Missing(looked) => ("none", json!(looked)),
                };
                let routes: Vec<&str> = runtime
                    .config
                    .routes
                    .iter()
                    .filter(|r| {
                        runtime.config.tenants[r.tenant].id == *tenant
                            && r.secret_refs.iter().any(|s| s == name)
                    })
                    .map(|r| r.name.as_str())
                    .collect();
                json!({
                    "tenant": tenant,
                    "name": name,
                    "status": if entry.is_present() { "present" } else { "missing" },
                    "source": kind,
                    "location": location,
                    "fingerprint": entry.fingerprint,
                    "loaded_at_ms": ms(entry.loaded_at),
                    "rotated_at_ms": usage.rotated_ms(),
                    "expires_at_ms": entry.expires.map(ms),
                    "last_used_at_ms": Some(usage.last_used_ms()).filter(|t| *t > 0),
                    "use_count": usage.use_count(),
                    "last_upstream_auth_failure": usage.last_auth_failure().map(|(at, status)| json!({"at_ms": at, "status": status})),
                    "routes": routes,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (a["tenant"].as_str(), a["name"].as_str())
                .cmp(&(b["tenant"].as_str(), b["name"].as_str()))
        });
        json!({ "secrets": out })
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

fn ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    fn json(status: StatusCode, value: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_vec_pretty(value).unwrap_or_default(),
        }
    }

    fn error(status: StatusCode, code: &str) -> Self {
        Self::json(status, &json!({ "error": code }))
    }
}

#[async_trait]
impl ServeHttp for AdminApi {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Admin requests carry no body we need; read and discard any, bounded.
        let mut read = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            read += chunk.len();
            if read > 64 * 1024 {
                break;
            }
        }
        let reply = self.route(session).await;
        Response::builder()
            .status(reply.status)
            .header("content-type", reply.content_type)
            .header("content-length", reply.body.len())
            .header("cache-control", "no-store")
            .body(reply.body)
            .unwrap_or_default()
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
