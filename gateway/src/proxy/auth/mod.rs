//! Passthrough: the caller's own token, checked before the request may go upstream.
//!
//! The token comes from the route's `token_header` (default `Authorization`) and is forwarded
//! exactly as it came (`forward` leaves it alone); the gateway key never is. A route with
//! `[routes.jwt]` verifies it first (signature with the issuer's published keys, algorithm
//! allowlist, `exp`/`nbf` with leeway, `iss`, `aud`); an `opaque` route only requires one.
//! A refusal is 401 `token_invalid` with a [`TokenReason`]; the token itself is never echoed
//! or logged.

use std::sync::Arc;

use http::HeaderValue;
use pingora::http::RequestHeader;

use super::ctx::RequestCtx;
use crate::outcome::{ErrorCode, TokenReason};
use crate::runtime::AuthRuntime;

/// Checks a passthrough route's token; `Err` is the code to refuse with (and
/// `ctx.token_reason` says why for `token_invalid`). Other routes pass.
pub(super) async fn check(req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), ErrorCode> {
    let Some(id) = ctx.route else {
        return Ok(());
    };
    let rt = Arc::clone(&ctx.runtime);
    let (route, state) = (&rt.config.routes[id], &rt.routes[id]);
    let portcullis_config::RouteAuth::Passthrough(passthrough) = &route.auth else {
        return Ok(());
    };
    let AuthRuntime::Passthrough { jwt } = &state.auth else {
        return Ok(());
    };
    let verdict = match token(req.headers.get(&passthrough.token_header)) {
        None => Err(Refusal::Invalid(TokenReason::Missing)),
        Some(_) if jwt.is_none() => Ok(()),
        Some(token) => match jwt {
            Some((cache, policy)) => verify(token, cache, policy).await,
            None => Ok(()),
        },
    };
    match verdict {
        Ok(()) => Ok(()),
        Err(Refusal::Invalid(reason)) => {
            tracing::info!(request_id = %ctx.request_id, route = %route.name, %reason, "token refused");
            state.metrics.jwt_failure(reason);
            ctx.token_reason = Some(reason);
            Err(ErrorCode::TokenInvalid)
        }
        Err(Refusal::NoKeys) => {
            tracing::warn!(request_id = %ctx.request_id, route = %route.name, "no usable JWKS to verify the token with");
            Err(ErrorCode::JwksUnavailable)
        }
    }
}

/// Why a token was not accepted.
enum Refusal {
    /// The token is missing or invalid.
    Invalid(TokenReason),
    /// No key set can be had to verify it with.
    NoKeys,
}

/// The token in a header value: the value itself, without a `Bearer ` scheme if it has one;
/// `None` when there is no token.
fn token(value: Option<&HeaderValue>) -> Option<&str> {
    let value = value?.to_str().ok().unwrap_or("\u{0}").trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

async fn verify(
    token: &str,
    cache: &Arc<crate::tokens::jwks::JwksCache>,
    policy: &crate::tokens::jwt::JwtPolicy,
) -> Result<(), Refusal> {
    let keys = cache.current().await.ok_or(Refusal::NoKeys)?;
    let (verified, digest) = policy.already_verified(token, &keys);
    if verified {
        return Ok(());
    }
    let head = policy.head(token).map_err(Refusal::Invalid)?;
    let (exp, keys) = match policy.verify(token, &head, &keys) {
        Err(TokenReason::UnknownKey) => {
            // Keys rotate: look again once (throttled), then give up on this kid.
            let keys = cache
                .refetch_for_unknown_key()
                .await
                .ok_or(Refusal::NoKeys)?;
            let exp = policy
                .verify(token, &head, &keys)
                .map_err(Refusal::Invalid)?;
            (exp, keys)
        }
        other => (other.map_err(Refusal::Invalid)?, keys),
    };
    policy.remember(digest, exp, &keys);
    Ok(())
}

#[cfg(test)]
mod tests;
