//! The upstream request head: the rewritten path, only the headers the route lets through, the
//! injected credentials (or the exchanged token; a passthrough route's token header is on its
//! forward list and goes as it came), `Host` and the forwarding headers.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{CONNECTION, HOST};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use portcullis_routes::join_base_path;

use super::ctx::RequestCtx;

/// Rewrites `upstream` (a copy of the caller's request head) into what the upstream receives.
pub(super) fn upstream_head(
    session: &Session,
    upstream: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    let Some((route, state)) = ctx.route() else {
        return Error::e_explain(ErrorType::InternalError, "no route in context");
    };
    let targets = route.upstream.targets();
    let target = &targets[ctx.target.min(targets.len() - 1)];

    let path = join_base_path(&target.base_path, &ctx.upstream_path);
    let uri = path
        .parse::<http::Uri>()
        .map_err(|e| Error::because(ErrorType::InternalError, "rewritten path is invalid", e))?;
    upstream.set_uri(uri);

    // Drop everything not on the route's forward list, then the key and any caller-sent copy
    // of an injected header, then inject.
    let drop: Vec<http::HeaderName> = upstream
        .headers
        .keys()
        .filter(|name| !route.forward_headers.contains(name))
        .cloned()
        .collect();
    for name in &drop {
        upstream.remove_header(name);
    }
    let config = &ctx.runtime.config;
    upstream.remove_header(&config.server.gateway_key_header);
    for (name, value) in &state.injected.headers {
        upstream.remove_header(name);
        upstream.insert_header(name.clone(), value.clone())?;
    }
    if let (portcullis_config::RouteAuth::Exchange(exchange), Some(token)) =
        (&route.auth, &ctx.exchanged)
    {
        upstream.remove_header(&exchange.header);
        upstream.insert_header(exchange.header.clone(), token.value.clone())?;
    }
    if route.change_origin {
        upstream.insert_header(HOST, target.authority.clone())?;
    }
    if route.upstream.tunnel().is_some() {
        // One stream per request: Pingora cannot take a virtual socket out of its pool again
        // (see `upstream::tunnel::connector`), so do not leave one idle on the agent.
        upstream.insert_header(CONNECTION, "close")?;
    }

    let trusted = ctx
        .client_ip
        .is_some_and(|ip| config.server.trusted_proxies.contains(ip));
    let prior = match session.req_header().headers.get("x-forwarded-for") {
        Some(prior) if trusted => prior.to_str().ok(),
        _ => None,
    };
    upstream.insert_header("x-forwarded-for", forwarded_for(prior, ctx.client_ip))?;
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    // Static values: no copy of the text per request.
    let proto = if tls { HTTPS } else { HTTP };
    upstream.insert_header("x-forwarded-proto", HeaderValue::from_static(proto))?;
    upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
    Ok(())
}

const HTTP: &str = "http";
const HTTPS: &str = "https";

/// `X-Forwarded-For`: the caller's address, after the list a trusted proxy sent (if any), written
/// into one buffer (an IPv6 address is at most 45 characters).
fn forwarded_for(prior: Option<&str>, client: Option<IpAddr>) -> String {
    let mut out = String::with_capacity(prior.map_or(0, |p| p.len() + 2) + 45);
    if let Some(prior) = prior {
        out.push_str(prior);
        out.push_str(", ");
    }
    if let Some(ip) = client {
        // Writing to a String cannot fail.
        let _ = write!(out, "{ip}");
    }
    out
}
