//! Every error a caller can see: a stable code, mapped to an HTTP status in exactly one place.
//!
//! The proxy decides which code a request gets (`proxy::error`); metrics, the audit log and the
//! traffic ring record it. This module is the vocabulary both sides share, so it sits below both.
//!
//! Bodies are small JSON objects, `{"error":"path_denied","route":"acme-jira","request_id":"…"}`.
//! Nothing here ever carries a header value, a secret or an upstream error chain: the code is
//! the contract, details go to the log.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;

/// The stable error codes of the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ErrorCode {
    /// No route matches host and path.
    NoRoute,
    /// Missing or wrong gateway key.
    Unauthenticated,
    /// The caller's address is outside the allowed CIDRs (or unknown).
    CallerDenied,
    /// The path failed normalisation or no accept rule allows it.
    PathDenied,
    /// The upstream address is in a range the route may not reach.
    DestinationDenied,
    /// The route does not accept this method.
    MethodNotAllowed,
    /// The request body exceeds the route's limit.
    BodyTooLarge,
    /// The request headers exceed the server's limit.
    HeadersTooLarge,
    /// The request line and headers did not arrive within `server.request_header_timeout_ms`
    /// (written by the connection layer, which then closes the connection).
    RequestTimeout,
    /// The request is malformed (e.g. no usable host).
    BadRequest,
    /// No connection to any target could be made.
    UpstreamUnreachable,
    /// A secret the route injects is not present.
    SecretMissing,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The audit log cannot take the request's line and the policy is fail-closed.
    AuditUnavailable,
    /// An unexpected failure inside the gateway.
    Internal,
    /// The route's tunnel has no connected agent (and none left recently).
    TunnelOffline,
    /// Every agent of the route's tunnel left less than the grace window ago; they are
    /// expected back (answered with `Retry-After`).
    TunnelReconnecting,
    /// The agent carrying the request disconnected before the response head arrived.
    TunnelDisconnected,
    /// A passthrough route's token is missing or fails validation (the body says why, as a
    /// [`TokenReason`]).
    TokenInvalid,
    /// The keys to validate a passthrough route's tokens could not be fetched (and no cached
    /// set is still usable).
    JwksUnavailable,
    /// An exchange route could not obtain a token from its token endpoint.
    TokenExchangeFailed,
}

/// Why a passed-through token was refused: the `reason` of a `token_invalid` answer and the
/// label of `portcullis_jwt_validation_failures_total`. Never the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TokenReason {
    /// No token in the configured header.
    Missing,
    /// Not a JWT: wrong shape, bad base64 or JSON, or a required claim missing.
    Malformed,
    /// The signature does not verify, or the algorithm is not one the route accepts (this
    /// covers `alg: none` and HMAC with the public key).
    BadSignature,
    /// No published key has the token's `kid` (after a refetch, when one was allowed).
    UnknownKey,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not the route's issuer.
    WrongIssuer,
    /// `aud` names none of the route's audiences.
    WrongAudience,
}

/// The JSON body of an error response.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    request_id: &'a str,
}

// === impl ErrorCode ===

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub(crate) const ALL: [ErrorCode; 21] = [
        ErrorCode::NoRoute,
        ErrorCode::Unauthenticated,
        ErrorCode::CallerDenied,
        ErrorCode::PathDenied,
        ErrorCode::DestinationDenied,
        ErrorCode::MethodNotAllowed,
        ErrorCode::BodyTooLarge,
        ErrorCode::HeadersTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::BadRequest,
        ErrorCode::UpstreamUnreachable,
        ErrorCode::SecretMissing,
        ErrorCode::UpstreamTimeout,
        ErrorCode::AuditUnavailable,
        ErrorCode::Internal,
        ErrorCode::TunnelOffline,
        ErrorCode::TunnelReconnecting,
        ErrorCode::TunnelDisconnected,
        ErrorCode::TokenInvalid,
        ErrorCode::JwksUnavailable,
        ErrorCode::TokenExchangeFailed,
    ];

    /// The code as it appears in the JSON body, logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "no_route",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::CallerDenied => "caller_denied",
            ErrorCode::PathDenied => "path_denied",
            ErrorCode::DestinationDenied => "destination_denied",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::SecretMissing => "secret_missing",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::TunnelOffline => "tunnel_offline",
            ErrorCode::TunnelReconnecting => "tunnel_reconnecting",
            ErrorCode::TunnelDisconnected => "tunnel_disconnected",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::JwksUnavailable => "jwks_unavailable",
            ErrorCode::TokenExchangeFailed => "token_exchange_failed",
        }
    }

    /// The one mapping from code to HTTP status.
    pub(crate) fn status(self) -> u16 {
        match self {
            ErrorCode::NoRoute => 404,
            ErrorCode::Unauthenticated | ErrorCode::TokenInvalid => 401,
            ErrorCode::CallerDenied | ErrorCode::PathDenied | ErrorCode::DestinationDenied => 403,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::BadRequest => 400,
            ErrorCode::UpstreamUnreachable
            | ErrorCode::TokenExchangeFailed
            | ErrorCode::TunnelOffline
            | ErrorCode::TunnelDisconnected => 502,
            ErrorCode::SecretMissing
            | ErrorCode::AuditUnavailable
            | ErrorCode::JwksUnavailable
            | ErrorCode::TunnelReconnecting => 503,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// The JSON body for this code; `reason` details a `token_invalid`.
    pub(crate) fn body(
        self,
        reason: Option<TokenReason>,
        route: Option<&str>,
        request_id: &str,
    ) -> Bytes {
        let body = ErrorBody {
            error: self.as_str(),
            reason: reason.map(TokenReason::as_str),
            route,
            request_id,
        };
        // Serialising three strings cannot fail; fall back to the bare code if it ever did.
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from(format!("{{\"error\":\"{}\"}}", self.as_str())))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl TokenReason ===

impl TokenReason {
    /// Every reason, for metrics and tests.
    pub(crate) const ALL: [TokenReason; 8] = [
        TokenReason::Missing,
        TokenReason::Malformed,
        TokenReason::BadSignature,
        TokenReason::UnknownKey,
        TokenReason::Expired,
        TokenReason::NotYetValid,
        TokenReason::WrongIssuer,
        TokenReason::WrongAudience,
    ];

    /// The reason as it appears in the body, logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenReason::Missing => "missing",
            TokenReason::Malformed => "malformed",
            TokenReason::BadSignature => "bad_signature",
            TokenReason::UnknownKey => "unknown_key",
            TokenReason::Expired => "expired",
            TokenReason::NotYetValid => "not_yet_valid",
            TokenReason::WrongIssuer => "wrong_issuer",
            TokenReason::WrongAudience => "wrong_audience",
        }
    }
}

impl fmt::Display for TokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_documented_table() {
        let table: Vec<(&str, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.status()))
            .collect();
        assert_eq!(
            table,
            [
                ("no_route", 404),
                ("unauthenticated", 401),
                ("caller_denied", 403),
                ("path_denied", 403),
                ("destination_denied", 403),
                ("method_not_allowed", 405),
                ("body_too_large", 413),
                ("headers_too_large", 431),
                ("request_timeout", 408),
                ("bad_request", 400),
                ("upstream_unreachable", 502),
                ("secret_missing", 503),
                ("upstream_timeout", 504),
                ("audit_unavailable", 503),
                ("internal", 500),
                ("tunnel_offline", 502),
                ("tunnel_reconnecting", 503),
                ("tunnel_disconnected", 502),
                ("token_invalid", 401),
                ("jwks_unavailable", 503),
                ("token_exchange_failed", 502),
            ]
        );
    }

    #[test]
    fn body_is_json_with_code_route_and_request_id() {
        let body = ErrorCode::PathDenied.body(None, Some("acme-jira"), "abc");
        assert_eq!(
            &body[..],
            br#"{"error":"path_denied","route":"acme-jira","request_id":"abc"}"#
        );
        let body = ErrorCode::NoRoute.body(None, None, "r1");
        assert_eq!(&body[..], br#"{"error":"no_route","request_id":"r1"}"#);
        let body = ErrorCode::TokenInvalid.body(Some(TokenReason::Expired), Some("gh"), "r2");
        assert_eq!(
            &body[..],
            br#"{"error":"token_invalid","reason":"expired","route":"gh","request_id":"r2"}"#
        );
    }
}
