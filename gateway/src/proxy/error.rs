//! Errors on the request path: which [`ErrorCode`] a failure is, and the one function that
//! writes an error response.

use http::header::CONTENT_LENGTH;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};
use portcullis_routes::MethodSet;

use super::ctx::RequestCtx;
use crate::observe::metrics::UpstreamErrorKind;
use crate::outcome::ErrorCode;

/// Writes a JSON error response for `code` and records it as the request's outcome.
pub(super) async fn respond(session: &mut Session, ctx: &mut RequestCtx, code: ErrorCode) {
    ctx.denial = Some(code);
    ctx.status = code.status();
    let route = ctx.route().map(|(route, _)| route);
    let reason = ctx.token_reason.filter(|_| code == ErrorCode::TokenInvalid);
    let body = code.body(reason, route.map(|r| r.name.as_str()), &ctx.request_id);
    let Ok(mut resp) = ResponseHeader::build(code.status(), Some(4)) else {
        return;
    };
    let _ = resp.insert_header("content-type", "application/json");
    let _ = resp.insert_header(CONTENT_LENGTH, body.len());
    let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
    if code == ErrorCode::TunnelReconnecting {
        let _ = resp.insert_header("retry-after", ctx.retry_after.unwrap_or(1).max(1));
    }
    if code == ErrorCode::MethodNotAllowed {
        if let Some(MethodSet::Only(methods)) = route.map(|r| &r.methods) {
            let _ = resp.insert_header("allow", methods.join(", "));
        }
    }
    // The request body (if any) was not read: the connection cannot be reused safely. Nor
    // after a refused CONNECT: the client may already be sending what it meant to tunnel.
    if !session.is_body_empty() || session.req_header().method == Method::CONNECT {
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

/// Maps a Pingora error that no filter classified to our code (`None`: the caller went away).
pub(super) fn classify(e: &Error) -> Option<ErrorCode> {
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

/// A tunnel route's failure that no filter classified: when the agent carrying the request
/// is gone, say so (502 `tunnel_disconnected`) rather than "upstream unreachable", which would
/// blame the customer's origin. `None`: not a tunnel route, or the agent is still there.
pub(super) fn tunnel_failure(e: &Error, ctx: &RequestCtx) -> Option<ErrorCode> {
    let agent = ctx.tunnel_agent.as_ref()?;
    if e.esource() == &ErrorSource::Downstream {
        return None;
    }
    if agent.is_closed() {
        return Some(ErrorCode::TunnelDisconnected);
    }
    // A tunnel stream fails with `ConnectionAborted` only once its connection has ended (the
    // transport reported its end, or the session was stopped) — which happens a moment before
    // the session reports itself closed. That error is the condition itself: no need to wait.
    let aborted = e
        .root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionAborted);
    aborted.then_some(ErrorCode::TunnelDisconnected)
}

/// What went wrong with the upstream, if anything did, for `portcullis_upstream_errors_total`.
pub(super) fn upstream_error_kind(
    e: Option<&Error>,
    ctx: &RequestCtx,
) -> Option<UpstreamErrorKind> {
    use ErrorType::*;
    match ctx.denial {
        Some(ErrorCode::DestinationDenied) => return Some(UpstreamErrorKind::DestinationDenied),
        Some(ErrorCode::UpstreamUnreachable)
            if ctx.upstream_addr.is_none() && ctx.tunnel_agent.is_none() =>
        {
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
