//! The request path: Pingora's `ProxyHttp` filters, in the order of DESIGN.md's
//! "One request, end to end". Each filter is a few lines that hand the work to the module that
//! owns it: [`admit`] (may this request go upstream?), [`peer`] (where to), [`forward`] (with
//! which head), [`error`] (what a failure is called and how it is answered), [`finish`] (what
//! is recorded).
//!
//! `new_ctx` loads the runtime snapshot once (one arc-swap load per request); every filter then
//! reads that same snapshot, so a reload never changes a request half-way. This module reads the
//! runtime and writes to the recorders; it never reaches into the process wiring (`app`) or the
//! admin API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::{Error, ErrorType, Result};

use self::admit::Admission;
use self::ctx::RequestCtx;
use crate::conn::GuardedStream;
use crate::observe::audit::ForwardRecord;
use crate::observe::record::redact_query;
use crate::observe::Recorders;
use crate::outcome::ErrorCode;
use crate::runtime::SharedRuntime;
use crate::upstream::tunnel::TunnelRegistry;

mod admit;
mod auth;
mod credentials;
mod ctx;
mod error;
mod finish;
mod forward;
mod peer;

/// Response headers dropped unless the route lists them in `allowed_headers`.
const GUARDED_RESPONSE_HEADERS: [&str; 2] = ["set-cookie", "set-cookie2"];

/// The Portcullis proxy service.
pub(crate) struct Gateway {
    runtime: SharedRuntime,
    recorders: Arc<Recorders>,
    tunnels: Arc<TunnelRegistry>,
}

// === impl Gateway ===

impl Gateway {
    /// A gateway serving whatever runtime is current, recording into `recorders`, reaching
    /// tunnel routes through the agents in `tunnels`.
    pub(crate) fn new(
        runtime: SharedRuntime,
        recorders: Arc<Recorders>,
        tunnels: Arc<TunnelRegistry>,
    ) -> Self {
        Self {
            runtime,
            recorders,
            tunnels,
        }
    }

    /// Writes the error response for `code`; `Ok(true)` tells Pingora the request is answered.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        code: ErrorCode,
    ) -> Result<bool> {
        error::respond(session, ctx, code).await;
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
        resp.insert_header(forward::X_REQUEST_ID, ctx.request_id.as_str())?;
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

    /// Fail-closed audit: the request's `forward` line must be in the audit log before the
    /// request reaches an upstream.
    async fn confirm_audit(&self, session: &Session, ctx: &RequestCtx) -> bool {
        let audit = &self.recorders.audit;
        if !audit.confirms_forwards() {
            return true;
        }
        let Some((_, state)) = ctx.route() else {
            return false;
        };
        let req = session.req_header();
        let record = ForwardRecord {
            time: ctx.arrived,
            request_id: ctx.request_id.clone(),
            tenant: Arc::clone(&state.tenant),
            route: Arc::clone(&state.name),
            method: req.method.clone(),
            path: redact_query(req.uri.path(), req.uri.query()),
            client_ip: ctx.client_ip,
        };
        audit.confirm_forward(record).await.is_ok()
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        // The one arc-swap load of this request.
        RequestCtx::new(self.runtime.load_full(), &self.recorders)
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let downstream = &mut session.downstream_session;
        // The head is in: the connection's head deadline stops here (HTTP/1).
        if let Some(stream) = GuardedStream::of(downstream) {
            stream.head_received();
        }
        // Keep-alive as configured, never turned back on once Pingora turned it off (a stop).
        if downstream.get_keepalive().is_some() {
            let keepalive = ctx.runtime.config.server.keepalive_timeout;
            downstream.set_keepalive(
                (!keepalive.is_zero()).then(|| keepalive.as_millis().div_ceil(1000) as u64),
            );
        }
        let req = downstream.req_header();
        ctx.method = req.method.clone();
        ctx.path = redact_query(req.uri.path(), req.uri.query());
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = admit::request_id(session.req_header());
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        match self.recorders.audit.reserve() {
            Ok(slot) => ctx.audit_slot = Some(slot),
            // Fail-closed audit policy: what cannot be audited is not served.
            Err(_) => return self.refuse(session, ctx, ErrorCode::AuditUnavailable).await,
        }
        match admit::admit(session.req_header(), ctx) {
            Admission::Forward => {}
            Admission::EgressDocument => return self.serve_egress_document(session, ctx).await,
            Admission::Refuse(code) => return self.refuse(session, ctx, code).await,
        }
        if let Err(code) = auth::check(session.req_header(), ctx).await {
            return self.refuse(session, ctx, code).await;
        }
        if !self.confirm_audit(session, ctx).await {
            return self.refuse(session, ctx, ErrorCode::AuditUnavailable).await;
        }
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
        credentials::acquire(ctx).await?;
        if ctx
            .route()
            .is_some_and(|(route, _)| route.upstream.tunnel().is_some())
        {
            peer::tunnel_peer(ctx, &self.tunnels).await
        } else {
            peer::saas_peer(ctx)
        }
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retries = ctx.route().map_or(0, |(route, _)| route.retries);
        // A stream that could not be opened on an agent that has just gone carried nothing:
        // another agent may take even a non-idempotent request.
        let agent_gone = ctx.tunnel_agent.as_ref().is_some_and(|a| a.is_closed());
        if ctx.connect_attempts <= retries
            && (agent_gone || session.req_header().method.is_idempotent())
        {
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
        forward::upstream_head(session, upstream, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        credentials::on_upstream_response(session, upstream_response, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.route().is_some_and(|(route, _)| !route.pass_set_cookie) {
            for name in GUARDED_RESPONSE_HEADERS {
                resp.remove_header(name);
            }
        }
        resp.insert_header(forward::X_REQUEST_ID, ctx.request_id.as_str())?;
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
        if ctx.deadline.is_some_and(|d| std::time::Instant::now() > d) {
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
        let code = match ctx.denial {
            Some(code) => Some(code),
            None => error::tunnel_failure(e, ctx).or_else(|| error::classify(e)),
        };
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
                    error::respond(session, ctx, code).await;
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

    /// What Pingora appends to its own error lines about a request: the method, the request id
    /// and the path without its query — no query value, no `Host` (Pingora's default has both).
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let path = if ctx.path.is_empty() {
            session.req_header().uri.path()
        } else {
            ctx.path
                .split_once('?')
                .map_or(ctx.path.as_str(), |(p, _)| p)
        };
        format!("{} {path} request_id={}", ctx.method, ctx.request_id)
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        _error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        // The retry after an upstream 401 to an exchanged token is expected and logged (at
        // info) by `credentials`; it is not a failure worth a warning.
        matches!(context, ProxyWarnLogContext::UpstreamRetry)
            && ctx.token_retried
            && ctx.exchanged.is_none()
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Denials are expected outcomes, logged once by `logging` with their code.
        ctx.denial.is_some()
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        finish::record(&self.recorders, session, e, ctx);
        let downstream = &mut session.downstream_session;
        if GuardedStream::of(downstream).is_some() {
            if downstream.is_body_done() {
                if let Some(stream) = GuardedStream::of(downstream) {
                    stream.request_done();
                }
            } else {
                // Pingora would read the rest of the body before the next head, and those
                // bytes would start the next head's deadline: close instead.
                downstream.set_keepalive(None);
            }
        }
    }
}
