//! Exchange routes at request time: the token to send, and what an upstream 401 to it means.
//!
//! The token is obtained in `upstream_peer` — before any connection is made, once per attempt —
//! from the route's [`ExchangeState`](crate::tokens::exchange::ExchangeState) (cached, or one
//! exchange shared by every waiting request), and set by `forward` as a sensitive header value.
//!
//! An upstream 401 to a request that carried a cached token invalidates that token (once) and,
//! for idempotent requests, retries the request once with a new token. The retry uses Pingora's
//! own mechanism: `upstream_response_filter` sees the 401 before anything is sent to the caller
//! and returns an error marked retryable; Pingora then calls `upstream_peer` again (which gets
//! the new token) and replays the request, body included from its retry buffer. Pingora's
//! `error_while_proxy` refuses the retry for non-idempotent methods and for bodies too large
//! for that buffer; those requests get the 401 as it came, and the next request uses a new
//! token.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::outcome::ErrorCode;
use crate::runtime::AuthRuntime;

/// Gets the token of an exchange route into `ctx.exchanged` (other routes: nothing to do).
pub(super) async fn acquire(ctx: &mut RequestCtx) -> Result<()> {
    if ctx.exchanged.is_some() {
        return Ok(());
    }
    let Some((route, state)) = ctx.route() else {
        return Ok(());
    };
    let AuthRuntime::Exchange(exchange) = &state.auth else {
        return Ok(());
    };
    let Some(exchange) = exchange.clone() else {
        // Admission refuses routes with missing secrets before they get here.
        ctx.denial = Some(ErrorCode::SecretMissing);
        return Error::e_explain(ErrorType::HTTPStatus(503), "exchange secrets missing");
    };
    let route_name = route.name.clone();
    match exchange.token().await {
        Ok(token) => {
            ctx.exchanged = Some(token);
            Ok(())
        }
        Err(error) => {
            tracing::warn!(request_id = %ctx.request_id, route = %route_name, %error, "no exchanged token");
            ctx.denial = Some(ErrorCode::TokenExchangeFailed);
            Error::e_explain(ErrorType::HTTPStatus(502), "token exchange failed")
        }
    }
}

/// Looks at the upstream's response head: a 401 to an exchanged token invalidates it, and
/// asks Pingora to retry the request once when that is safe.
pub(super) fn on_upstream_response(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    if resp.status.as_u16() != 401 {
        return Ok(());
    }
    let Some(token) = ctx.exchanged.take() else {
        return Ok(());
    };
    let Some((_, state)) = ctx.route() else {
        return Ok(());
    };
    let AuthRuntime::Exchange(Some(exchange)) = &state.auth else {
        return Ok(());
    };
    exchange.invalidate(token.generation);
    let replayable =
        session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
    if ctx.token_retried || !replayable {
        return Ok(());
    }
    ctx.token_retried = true;
    tracing::info!(request_id = %ctx.request_id, "upstream refused the exchanged token; retrying with a new one");
    let mut e = Error::explain(
        ErrorType::HTTPStatus(401),
        "upstream refused the exchanged token",
    );
    e.set_retry(true);
    Err(e)
}
