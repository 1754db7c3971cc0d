//! The request path: Pingora's `ProxyHttp` filters, in the order of DESIGN.md's
//! "One request, end to end".
//!
//! `new_ctx` loads the runtime snapshot once (one arc-swap load per request); every filter then
//! reads that same snapshot, so a reload never changes a request half-way. Denials are written
//! by one function, [`Gateway::respond_error`], from an [`ErrorCode`].

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method};
use pingora::connectors::l4::BindTo;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use portcullis_allowlist::normalize_path;
use portcullis_routes::{join_base_path, Lookup, MethodSet};

use crate::audit::{AuditEvent, AuditSlot, RequestRecord};
use crate::control::Shared;
use crate::egress::EGRESS_DOCUMENT_PATH;
use crate::errors::ErrorCode;
use crate::metrics::UpstreamErrorKind;
use crate::runtime::Runtime;
use crate::traffic::redact_query;
use crate::upstream::TargetIndex;

/// Response headers dropped unless the route lists them in `allowed_headers`.
const GUARDED_RESPONSE_HEADERS: [&str; 2] = ["set-cookie", "set-cookie2"];

/// The longest caller-supplied `x-request-id` that is kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The Portcullis proxy service.
pub struct Gateway {
    shared: Arc<Shared>,
}

/// Per-request state, carried through every filter.
pub struct RequestCtx {
    runtime: Arc<Runtime>,
    started: Instant,
    request_id: String,
    route: Option<usize>,
    denial: Option<ErrorCode>,
    upstream_path: String,
    target: usize,
    connect_attempts: u32,
    deadline: Option<Instant>,
    body_bytes: u64,
    body_limit: Option<u64>,
    client_ip: Option<IpAddr>,
    egress: Option<IpAddr>,
    status: u16,
    upstream_addr: Option<std::net::SocketAddr>,
    upstream_status: Option<u16>,
    bytes_out: u64,
    counted_active: bool,
    audit_slot: Option<AuditSlot>,
}

// === impl Gateway ===

impl Gateway {
    /// A gateway serving whatever runtime is current in `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Writes a JSON error response for `code` and records it as the request's outcome.
    async fn respond_error(&self, session: &mut Session, ctx: &mut RequestCtx, code: ErrorCode) {
        ctx.denial = Some(code);
        ctx.status = code.status();
        let route = ctx
            .route
            .map(|i| ctx.runtime.config.routes[i].name.as_str());
        let body = code.body(route, &ctx.request_id);
        let Ok(mut resp) = ResponseHeader::build(code.status(), Some(4)) else {
            return;
        };
        let _ = resp.insert_header("content-type", "application/json");
        let _ = resp.insert_header(CONTENT_LENGTH, body.len());
        let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
        if code == ErrorCode::MethodNotAllowed {
            if let Some(MethodSet::Only(methods)) =
                ctx.route.map(|i| &ctx.runtime.config.routes[i].methods)
            {
                let _ = resp.insert_header("allow", methods.join(", "));
            }
        }
        // The request body (if any) was not read: the connection cannot be reused safely.
        if !session.is_body_empty() {
            session.set_keepalive(None);
        }
        let head_only = session.req_header().method == Method::HEAD;
        if let Err(e) = session
            .write_response_header(Box::new(resp), head_only)
            .await
        {
            tracing::debug!(error = %e, "could not write error response header");
            return;
        }
        if !head_only {
            if let Err(e) = session.write_response_body(Some(body), true).await {
                tracing::debug!(error = %e, "could not write error response body");
            }
        }
    }

    async fn deny(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        code: ErrorCode,
    ) -> Result<bool> {
        self.respond_error(session, ctx, code).await;
        Ok(true)
    }

    async fn serve_egress_document(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let body = ctx.runtime.egress_document.clone();
        let mut resp = ResponseHeader::build(200, Some(4))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header(CONTENT_LENGTH, body.len())?;
        resp.insert_header("cache-control", "public, max-age=300")?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        let head_only = session.req_header().method == Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        ctx.status = 200;
        Ok(true)
    }
}

/// A caller's request id is kept when it is short and plain; otherwise a new one is made.
fn request_id(req: &RequestHeader) -> String {
    if let Some(v) = req.headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            // Checked ASCII above.
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    format!("{:032x}", rand::random::<u128>())
}

fn header_bytes(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// Maps a Pingora error that no filter classified to our code.
fn classify(e: &Error) -> Option<ErrorCode> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(413)) => Some(ErrorCode::BodyTooLarge),
        (ErrorSource::Upstream, ConnectTimedout | ReadTimedout | WriteTimedout) => {
            Some(ErrorCode::UpstreamTimeout)
        }
        (ErrorSource::Internal, ConnectTimedout) => Some(ErrorCode::UpstreamTimeout),
        (ErrorSource::Upstream, _) => Some(ErrorCode::UpstreamUnreachable),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
        (ErrorSource::Downstream, _) => Some(ErrorCode::BadRequest),
        (_, ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure) => {
            Some(ErrorCode::UpstreamUnreachable)
        }
        _ => Some(ErrorCode::Internal),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            // The one arc-swap load of this request.
            runtime: self.shared.runtime.load_full(),
            started: Instant::now(),
            request_id: String::new(),
            route: None,
            denial: None,
            upstream_path: String::new(),
            target: 0,
            connect_attempts: 0,
            deadline: None,
            body_bytes: 0,
            body_limit: None,
            client_ip: None,
            egress: None,
            status: 0,
            upstream_addr: None,
            upstream_status: None,
            bytes_out: 0,
            counted_active: false,
            audit_slot: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let rt = Arc::clone(&ctx.runtime);
        self.shared.metrics.active_requests().inc();
        ctx.counted_active = true;
        let req = session.req_header();
        ctx.request_id = request_id(req);
        match self.shared.audit.reserve() {
            Ok(slot) => ctx.audit_slot = Some(slot),
            // Fail-closed audit policy: what cannot be audited is not served.
            Err(_) => return self.deny(session, ctx, ErrorCode::AuditUnavailable).await,
        }
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let req = session.req_header();
        if header_bytes(req) > rt.config.server.max_request_header_bytes {
            return self.deny(session, ctx, ErrorCode::HeadersTooLarge).await;
        }
        if req.uri.path() == EGRESS_DOCUMENT_PATH
            && (req.method == Method::GET || req.method == Method::HEAD)
        {
            return self.serve_egress_document(session, ctx).await;
        }

        // Normalise before matching: what is matched is what is forwarded.
        let path = match normalize_path(req.uri.path()) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(request_id = %ctx.request_id, reason = %e, "path rejected");
                return self.deny(session, ctx, ErrorCode::PathDenied).await;
            }
        };
        let host = req
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let route_id = match rt.config.table.lookup(host, &path, req.method.as_str()) {
            Lookup::Matched(id) => id.0,
            Lookup::MethodNotAllowed(id) => {
                ctx.route = Some(id.0);
                return self.deny(session, ctx, ErrorCode::MethodNotAllowed).await;
            }
            Lookup::NotFound => return self.deny(session, ctx, ErrorCode::NoRoute).await,
        };
        ctx.route = Some(route_id);
        let route = &rt.config.routes[route_id];
        let tenant = &rt.config.tenants[route.tenant];

        // Where the caller is from, then who the caller is.
        if let Some(cidrs) = route.caller_cidrs.as_ref().or(tenant.caller_cidrs.as_ref()) {
            // Fail closed when the peer address is unknown (e.g. a Unix socket).
            if !ctx.client_ip.is_some_and(|ip| cidrs.contains(ip)) {
                return self.deny(session, ctx, ErrorCode::CallerDenied).await;
            }
        }
        if !route.public {
            let presented = req
                .headers
                .get(&rt.config.server.gateway_key_header)
                .map(HeaderValue::as_bytes);
            if !presented.is_some_and(|k| tenant.keys.matches(k)) {
                return self.deny(session, ctx, ErrorCode::Unauthenticated).await;
            }
        }
        if route
            .accept
            .check(req.method.as_str(), &path, req.uri.query())
            .is_err()
        {
            return self.deny(session, ctx, ErrorCode::PathDenied).await;
        }
        ctx.body_limit = route
            .max_request_body_bytes
            .or(rt.config.server.max_request_body_bytes);
        if let Some(limit) = ctx.body_limit {
            let declared = req
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit) {
                return self.deny(session, ctx, ErrorCode::BodyTooLarge).await;
            }
        }
        if !rt.routes[route_id].missing.is_empty() {
            tracing::warn!(
                request_id = %ctx.request_id,
                route = %route.name,
                missing = ?rt.routes[route_id].missing,
                "route has unresolved secret references"
            );
            return self.deny(session, ctx, ErrorCode::SecretMissing).await;
        }

        let with_query: Cow<'_, str> = match req.uri.query() {
            Some(q) => Cow::Owned(format!("{path}?{q}")),
            None => path,
        };
        ctx.upstream_path = route
            .rewrite
            .apply(&route.path_prefix, &with_query)
            .into_owned();
        ctx.deadline = Some(ctx.started + route.timeouts.total);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_limit.is_some_and(|limit| ctx.body_bytes > limit) {
                ctx.denial = Some(ErrorCode::BodyTooLarge);
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over the limit");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let rt = Arc::clone(&ctx.runtime);
        let route_id = ctx
            .route
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let route = &rt.config.routes[route_id];
        let state = &rt.routes[route_id];
        ctx.connect_attempts += 1;

        let Some(backend) = state.upstream.select(b"", 64) else {
            ctx.denial = Some(ErrorCode::UpstreamUnreachable);
            return Error::e_explain(ErrorType::HTTPStatus(502), "no healthy target");
        };
        let Some(addr) = backend.addr.as_inet().copied() else {
            ctx.denial = Some(ErrorCode::UpstreamUnreachable);
            return Error::e_explain(ErrorType::HTTPStatus(502), "target is not an inet address");
        };
        // The resolved address is checked here and connected to below: no second resolution.
        if let Err(denied) = route.destinations.check(addr.ip()) {
            tracing::warn!(request_id = %ctx.request_id, route = %route.name, %denied, "destination refused");
            ctx.denial = Some(ErrorCode::DestinationDenied);
            return Error::e_explain(ErrorType::HTTPStatus(403), "destination denied");
        }
        let target_index = backend.ext.get::<TargetIndex>().map_or(0, |t| t.0);
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
                return Error::e_explain(
                    ErrorType::HTTPStatus(502),
                    "no egress address for family",
                );
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

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retries = ctx
            .route
            .map_or(0, |i| ctx.runtime.config.routes[i].retries);
        if ctx.connect_attempts <= retries && session.req_header().method.is_idempotent() {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let rt = &ctx.runtime;
        let Some(route_id) = ctx.route else {
            return Error::e_explain(ErrorType::InternalError, "no route in context");
        };
        let route = &rt.config.routes[route_id];
        let state = &rt.routes[route_id];
        let targets = route.upstream.targets();
        let target = &targets[ctx.target.min(targets.len() - 1)];

        let path = join_base_path(&target.base_path, &ctx.upstream_path);
        let uri = path.parse::<http::Uri>().map_err(|e| {
            Error::because(ErrorType::InternalError, "rewritten path is invalid", e)
        })?;
        upstream.set_uri(uri);

        // Drop everything not on the route's forward list, then the key and any caller-sent copy
        // of an injected header, then inject.
        let drop: Vec<http::HeaderName> = upstream
            .headers
            .keys()
            .filter(|name| !state.forward_headers.contains(name))
            .cloned()
            .collect();
        for name in &drop {
            upstream.remove_header(name);
        }
        upstream.remove_header(&rt.config.server.gateway_key_header);
        for (name, value) in &state.headers {
            upstream.remove_header(name);
            upstream.insert_header(name.clone(), value.clone())?;
        }
        if route.change_origin {
            upstream.insert_header(HOST, target.authority.clone())?;
        }

        let client = ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let trusted = ctx
            .client_ip
            .is_some_and(|ip| rt.config.server.trusted_proxies.contains(ip));
        let forwarded_for = match session.req_header().headers.get("x-forwarded-for") {
            Some(prior) if trusted => match prior.to_str() {
                Ok(prior) => format!("{prior}, {client}"),
                Err(_) => client,
            },
            _ => client,
        };
        upstream.insert_header("x-forwarded-for", forwarded_for)?;
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        upstream.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(route_id) = ctx.route {
            let route = &ctx.runtime.config.routes[route_id];
            if !route.pass_set_cookie {
                for name in GUARDED_RESPONSE_HEADERS {
                    resp.remove_header(name);
                }
            }
        }
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        ctx.status = resp.status.as_u16();
        ctx.upstream_status = Some(ctx.status);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            ctx.bytes_out += chunk.len() as u64;
        }
        Ok(None)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.deadline.is_some_and(|d| Instant::now() > d) {
            return Error::e_explain(ErrorType::ReadTimedout, "total upstream timeout exceeded")
                .map_err(|mut e| {
                    e.set_retry(false);
                    e
                });
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = ctx.denial.or_else(|| classify(e));
        if code == Some(ErrorCode::BodyTooLarge) {
            // Read (and discard) what the client is still sending, briefly, so that it sees the
            // 413 rather than a connection reset.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), session.drain_request_body()).await;
        }
        // The connection is not reused after a failure: say so (`Connection: close`) so that a
        // client does not send its next request into a closing socket.
        session.set_keepalive(None);
        let status = match code {
            Some(code) => {
                if ctx.status == 0 {
                    self.respond_error(session, ctx, code).await;
                }
                code.status()
            }
            None => 0,
        };
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Denials are expected outcomes, logged once by `logging` with their code.
        ctx.denial.is_some()
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.counted_active {
            self.shared.metrics.active_requests().dec();
        }
        let rt = Arc::clone(&ctx.runtime);
        let route = ctx.route.map(|i| &rt.config.routes[i]);
        let state = ctx.route.map(|i| &rt.routes[i]);
        let status = if ctx.status != 0 {
            ctx.status
        } else {
            session.response_written().map_or(0, |r| r.status.as_u16())
        };
        let duration = ctx.started.elapsed();
        let req = session.req_header();

        if rt.config.metrics_enabled {
            let metrics = state.map_or(self.shared.metrics.unrouted(), |s| &s.metrics);
            metrics.observe(&req.method, status, duration);
            if let Some(code) = ctx.denial {
                metrics.denied(code);
            }
            if let Some(kind) = upstream_error_kind(e, ctx) {
                metrics.upstream_error(kind);
            }
        }
        if let (Some(state), Some(upstream_status)) = (state, ctx.upstream_status) {
            for usage in &state.secret_usage {
                usage.used();
                if upstream_status == 401 || upstream_status == 403 {
                    usage.auth_failed(upstream_status);
                }
            }
        }

        let record = Arc::new(RequestRecord {
            time: std::time::SystemTime::now(),
            request_id: ctx.request_id.clone(),
            tenant: route.map(|r| rt.config.tenants[r.tenant].id.clone()),
            route: route.map(|r| r.name.clone()),
            method: req.method.as_str().to_owned(),
            path: redact_query(req.uri.path(), req.uri.query()),
            status,
            denial: ctx.denial.map(ErrorCode::as_str),
            duration,
            client_ip: ctx.client_ip,
            egress: ctx.egress,
            upstream: ctx.upstream_addr,
            bytes_in: ctx.body_bytes,
            bytes_out: ctx.bytes_out,
        });
        if let Some(slot) = ctx.audit_slot.take() {
            self.shared
                .audit
                .record(slot, AuditEvent::Request(Arc::clone(&record)));
        }
        self.shared.traffic.push(record);
        tracing::info!(
            target: "portcullis::access",
            request_id = %ctx.request_id,
            route = route.map_or("-", |r| r.name.as_str()),
            method = %req.method,
            path = req.uri.path(),
            status,
            denial = ctx.denial.map(ErrorCode::as_str),
            egress = ?ctx.egress,
            duration_ms = duration.as_secs_f64() * 1000.0,
            error = e.map(|e| e.etype().as_str()),
            "request"
        );
    }
}

/// What went wrong with the upstream, if anything did, for `portcullis_upstream_errors_total`.
fn upstream_error_kind(e: Option<&Error>, ctx: &RequestCtx) -> Option<UpstreamErrorKind> {
    use ErrorType::*;
    match ctx.denial {
        Some(ErrorCode::DestinationDenied) => return Some(UpstreamErrorKind::DestinationDenied),
        Some(ErrorCode::UpstreamUnreachable) if ctx.upstream_addr.is_none() => {
            return Some(UpstreamErrorKind::NoHealthyTarget)
        }
        _ => {}
    }
    let e = e?;
    if e.esource() != &ErrorSource::Upstream
        && !matches!(e.etype(), ConnectTimedout | ConnectRefused)
    {
        return None;
    }
    Some(match e.etype() {
        ConnectRefused => UpstreamErrorKind::ConnectRefused,
        ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
        TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
            UpstreamErrorKind::Tls
        }
        ReadTimedout => UpstreamErrorKind::ReadTimeout,
        WriteTimedout => UpstreamErrorKind::WriteTimeout,
        ConnectionClosed | ReadError | WriteError => UpstreamErrorKind::ConnectionReset,
        _ => UpstreamErrorKind::Other,
    })
}

/// The connection-pool group of an egress address and a route's trust/protocol salt.
fn pool_group_key(egress: Option<IpAddr>, salt: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    egress.hash(&mut h);
    salt.hash(&mut h);
    h.finish()
}
