//! Admission: everything `request_filter` decides before a request may go upstream, in the
//! order of DESIGN.md — header size, path normalisation, route, caller address, gateway key,
//! accept rules, body limit, credentials. Pure decisions over the request head and the
//! runtime; the caller writes the response.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method};
use pingora::http::RequestHeader;
use portcullis_allowlist::normalize_path;
use portcullis_routes::{Lookup, MethodSet};

use super::ctx::RequestCtx;
use crate::outcome::ErrorCode;
use crate::upstream::egress::EGRESS_DOCUMENT_PATH;

/// The longest caller-supplied `x-request-id` that is kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Methods refused (405) unless the matched route lists them in `allowed_methods`, even on a
/// route that allows every method: TRACE and TRACK make an upstream echo the request back —
/// with the secret the gateway injected — and CONNECT asks for a tunnel, which a route is not.
/// Compared without regard to case: some servers read methods that way.
const EXPLICIT_ONLY: [&str; 3] = ["TRACE", "TRACK", "CONNECT"];

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Forward it: `ctx` holds the route, the upstream path and the limits.
    Forward,
    /// Answer `/.well-known/egress-ips.json`.
    EgressDocument,
    /// Refuse it with this code.
    Refuse(ErrorCode),
}

/// Decides what to do with a request, filling `ctx` as it goes.
pub(super) fn admit(req: &RequestHeader, ctx: &mut RequestCtx) -> Admission {
    let rt = Arc::clone(&ctx.runtime);
    if header_bytes(req) > rt.config.server.max_request_header_bytes {
        return Admission::Refuse(ErrorCode::HeadersTooLarge);
    }
    if req.uri.path() == EGRESS_DOCUMENT_PATH
        && (req.method == Method::GET || req.method == Method::HEAD)
    {
        return Admission::EgressDocument;
    }

    let explicit_only = EXPLICIT_ONLY
        .iter()
        .any(|m| req.method.as_str().eq_ignore_ascii_case(m));

    // Normalise before matching: what is matched is what is forwarded.
    let path = match normalize_path(req.uri.path()) {
        Ok(p) => p,
        Err(_) if explicit_only => return Admission::Refuse(ErrorCode::MethodNotAllowed),
        Err(e) => {
            tracing::info!(request_id = %ctx.request_id, reason = %e, "path rejected");
            return Admission::Refuse(ErrorCode::PathDenied);
        }
    };
    let host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let route_id = match rt.config.table.lookup(host, &path, req.method.as_str()) {
        Lookup::Matched(id) => {
            let listed = matches!(&rt.config.routes[id.0].methods, MethodSet::Only(listed) if listed.iter().any(|m| m == req.method.as_str()));
            if explicit_only && !listed {
                ctx.route = Some(id.0);
                return Admission::Refuse(ErrorCode::MethodNotAllowed);
            }
            id.0
        }
        Lookup::MethodNotAllowed(id) => {
            ctx.route = Some(id.0);
            return Admission::Refuse(ErrorCode::MethodNotAllowed);
        }
        Lookup::NotFound if explicit_only => return Admission::Refuse(ErrorCode::MethodNotAllowed),
        Lookup::NotFound => return Admission::Refuse(ErrorCode::NoRoute),
    };
    ctx.route = Some(route_id);
    let route = &rt.config.routes[route_id];
    let tenant = &rt.config.tenants[route.tenant];

    // Where the caller is from, then who the caller is.
    if let Some(cidrs) = route.caller_cidrs.as_ref().or(tenant.caller_cidrs.as_ref()) {
        // Fail closed when the peer address is unknown (e.g. a Unix socket).
        if !ctx.client_ip.is_some_and(|ip| cidrs.contains(ip)) {
            return Admission::Refuse(ErrorCode::CallerDenied);
        }
    }
    if !route.public {
        let presented = req
            .headers
            .get(&rt.config.server.gateway_key_header)
            .map(HeaderValue::as_bytes);
        if !presented.is_some_and(|k| tenant.keys.matches(k)) {
            return Admission::Refuse(ErrorCode::Unauthenticated);
        }
    }
    if route
        .accept
        .check(req.method.as_str(), &path, req.uri.query())
        .is_err()
    {
        return Admission::Refuse(ErrorCode::PathDenied);
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
            return Admission::Refuse(ErrorCode::BodyTooLarge);
        }
    }
    let missing = &rt.routes[route_id].injected.missing;
    if !missing.is_empty() {
        tracing::warn!(
            request_id = %ctx.request_id,
            route = %route.name,
            ?missing,
            "route has unresolved secret references"
        );
        return Admission::Refuse(ErrorCode::SecretMissing);
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
    Admission::Forward
}

/// A caller's request id is kept when it is short and plain; otherwise a new one is made.
pub(super) fn request_id(req: &RequestHeader) -> String {
    if let Some(v) = req.headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            // Checked ASCII above.
            return String::from_utf8(b.to_vec()).unwrap_or_default();
        }
    }
    // 32 lowercase hex digits, as `format!("{:032x}")` would write them, without the formatter.
    let mut hex = [0u8; 32];
    // The buffer is exactly twice the input's length, so encoding cannot fail.
    let _ = hex::encode_to_slice(rand::random::<u128>().to_be_bytes(), &mut hex);
    String::from_utf8(hex.to_vec()).unwrap_or_default()
}

/// The size of the request head as the header limit counts it.
fn header_bytes(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}
