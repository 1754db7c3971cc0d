//! The upstream request head: the rewritten path, only the headers the route lets through, the
//! injected credentials (or the exchanged token; a passthrough route's token header is on its
//! forward list and goes as it came), `Host` and the forwarding headers.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
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

    // A fresh head with only what the route lets through: cheaper than removing the rest
    // from Pingora's copy, whose header map also keeps each name's case (names go lowercase,
    // as from Backstage's Node proxy and over HTTP/2).
    let config = &ctx.runtime.config;
    let injected = &state.injected.headers;
    let exchanged = match (&route.auth, &ctx.exchanged) {
        (portcullis_config::RouteAuth::Exchange(exchange), Some(token)) => {
            Some((&exchange.header, &token.value))
        }
        _ => None,
    };
    let replaced = |name: &HeaderName| {
        *name == config.server.gateway_key_header
            || injected.iter().any(|(injected, _)| injected == name)
            || exchanged.is_some_and(|(header, _)| header == name)
    };
    // Built as `http` parts and converted: `RequestHeader::insert_header` turns every name
    // into its title-case text and parses it back, about 700 instructions a header.
    let mut headers = HeaderMap::with_capacity(upstream.headers.len() + injected.len() + 4);
    for (name, value) in &upstream.headers {
        if route.forward_headers.contains(name) && !replaced(name) {
            headers
                .try_append(name.clone(), value.clone())
                .map_err(too_many)?;
        }
    }
    for (name, value) in injected {
        headers
            .try_insert(name.clone(), value.clone())
            .map_err(too_many)?;
    }
    if let Some((header, token)) = exchanged {
        headers
            .try_insert(header.clone(), token.clone())
            .map_err(too_many)?;
    }
    if route.change_origin {
        headers
            .try_insert(HOST, target.authority.clone())
            .map_err(too_many)?;
    }
    if route.upstream.tunnel().is_some() {
        // One stream per request: Pingora cannot take a virtual socket out of its pool again
        // (see `upstream::tunnel::connector`), so do not leave one idle on the agent.
        headers
            .try_insert(CONNECTION, HeaderValue::from_static("close"))
            .map_err(too_many)?;
    }

    let trusted = ctx
        .client_ip
        .is_some_and(|ip| config.server.trusted_proxies.contains(ip));
    let prior = match session.req_header().headers.get(&X_FORWARDED_FOR) {
        Some(prior) if trusted => prior.to_str().ok(),
        _ => None,
    };
    let forwarded = HeaderValue::try_from(forwarded_for(prior, ctx.client_ip))
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "x-forwarded-for", e))?;
    headers
        .try_insert(X_FORWARDED_FOR, forwarded)
        .map_err(too_many)?;
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    // Static values: no copy of the text per request.
    let proto = if tls { HTTPS } else { HTTP };
    headers
        .try_insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto))
        .map_err(too_many)?;
    let request_id = HeaderValue::from_str(&ctx.request_id)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "x-request-id", e))?;
    headers
        .try_insert(X_REQUEST_ID, request_id)
        .map_err(too_many)?;

    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = upstream.method.clone();
    parts.uri = uri;
    parts.version = upstream.version;
    parts.headers = headers;
    *upstream = RequestHeader::from(parts);
    Ok(())
}

/// A header map past `http`'s limit (32,768 entries): not reachable under Pingora's own
/// header limit, refused rather than a panic.
fn too_many(e: http::header::MaxSizeReached) -> Box<Error> {
    Error::because(ErrorType::InvalidHTTPHeader, "too many headers", e)
}

// Names made once, not parsed from text per request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    match client {
        Some(IpAddr::V4(v4)) => out.push_str(crate::text::ipv4(v4).as_str()),
        // Writing to a String cannot fail.
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_writes_addresses_as_display_does_after_a_trusted_list() {
        // Every octet width is covered in `text`'s own test.
        let v4 = IpAddr::from([10, 20, 255, 1]);
        assert_eq!(forwarded_for(None, Some(v4)), "10.20.255.1");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_for(None, Some(v6)), "2001:db8::1");
        assert_eq!(
            forwarded_for(Some("203.0.113.7"), Some(IpAddr::from([192, 0, 2, 44]))),
            "203.0.113.7, 192.0.2.44"
        );
        assert_eq!(forwarded_for(None, None), "");
    }
}
