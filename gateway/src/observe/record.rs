//! What happened to one request, as the audit log, the traffic ring and the access log see it.
//!
//! The proxy builds one [`RequestRecord`] per request when it ends and shares the same
//! allocation with every consumer. It is plain owned data with no header value and no query
//! value (only parameter *names*), so nothing downstream can leak a credential from it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A request, as it ended.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    /// When the request arrived.
    pub(crate) time: SystemTime,
    /// The request id also sent back in `x-request-id`.
    pub(crate) request_id: String,
    /// The tenant, once known.
    pub(crate) tenant: Option<Arc<str>>,
    /// The matched route, if any.
    pub(crate) route: Option<Arc<str>>,
    /// The request method.
    pub(crate) method: http::Method,
    /// The request path with query parameter names only (see [`redact_query`]).
    pub(crate) path: String,
    /// The status sent to the caller.
    pub(crate) status: u16,
    /// The error code when the gateway refused or failed the request.
    pub(crate) denial: Option<&'static str>,
    /// From arrival to the end of the response.
    pub(crate) duration: Duration,
    /// The caller's address, if known.
    pub(crate) client_ip: Option<IpAddr>,
    /// The source address the request left from.
    pub(crate) egress: Option<IpAddr>,
    /// Where the request went.
    pub(crate) upstream: Option<Upstream>,
    /// Request body bytes received.
    pub(crate) bytes_in: u64,
    /// Response body bytes sent.
    pub(crate) bytes_out: u64,
}

/// Where a request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// A resolved target address.
    Address(SocketAddr),
    /// A broker tunnel, and the agent that carried the request.
    Tunnel {
        /// The tunnel's name.
        tunnel: String,
        /// The agent's id.
        agent: String,
    },
}

// === impl Upstream ===

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Address(addr) => addr.fmt(f),
            Upstream::Tunnel { tunnel, agent } => write!(f, "tunnel/{tunnel}/{agent}"),
        }
    }
}

/// `/x` + `limit=5&cursor=abc` → `/x?limit&cursor`: parameter names help debugging, values may
/// be secrets (tokens in query strings) and are never kept.
pub(crate) fn redact_query(path: &str, query: Option<&str>) -> String {
    match query {
        None => path.to_owned(),
        Some(q) => {
            let mut out = String::with_capacity(path.len() + q.len());
            out.push_str(path);
            out.push('?');
            for (i, pair) in q.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                out.push_str(pair.split('=').next().unwrap_or(""));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_removed() {
        assert_eq!(
            redact_query("/x", Some("token=abc&limit=5&flag")),
            "/x?token&limit&flag"
        );
        assert_eq!(redact_query("/x", None), "/x");
        assert_eq!(redact_query("/x", Some("")), "/x?");
        assert_eq!(redact_query("/a", Some("x=1&y&z=s%20t")), "/a?x&y&z");
    }
}
