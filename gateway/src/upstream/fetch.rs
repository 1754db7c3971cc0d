//! The gateway's own HTTP requests — JWKS documents and token endpoints — held to the same rules
//! as the requests it proxies: the name is resolved here, every address is checked by the
//! route's destination guard, the connection goes to exactly an address that passed, from the
//! tenant's egress address, and TLS is always verified (against the route's CA bundle when it
//! names one, else the system roots). A route's `tls_verify = false` does not apply: keys and
//! tokens fetched from an unverified peer could be anyone's.
//!
//! It uses Pingora's own HTTP/1.1 connector, so the TLS stack and socket handling are the
//! proxy's. Connections are not pooled: these requests are rare (a key set every few minutes, a
//! token per lifetime), and a pooled connection would outlive the runtime that made it.
//!
//! Errors name the host, the address and what failed; never a request or response body, which
//! may hold a secret or a token.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method};
use pingora::connectors::http::v1::Connector;
use pingora::connectors::l4::BindTo;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use portcullis_allowlist::DestinationGuard;
use portcullis_config::Endpoint;

use super::egress::EgressSelector;
use super::CaBundle;

/// The largest answer read (JWKS documents and token responses are a few KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;
/// At most this many resolved addresses are tried.
const MAX_ADDRESSES: usize = 4;

/// Where and how a route's gateway-side requests go.
pub(crate) struct FetchTarget {
    /// The URL.
    pub(crate) endpoint: Endpoint,
    /// The route's destination guard.
    pub(crate) guard: DestinationGuard,
    /// The tenant's egress addresses (`None`: the system picks the source).
    pub(crate) egress: Option<EgressSelector>,
    /// The route's CA bundle, if it names one.
    pub(crate) ca: Option<CaBundle>,
    /// TCP connect (and TLS handshake) limit.
    pub(crate) connect_timeout: Duration,
    /// Limit on the whole request, from resolution to the last byte of the answer.
    pub(crate) timeout: Duration,
}

/// One request.
pub(crate) struct FetchRequest<'a> {
    /// `GET` or `POST`.
    pub(crate) method: Method,
    /// Extra headers (`content-type`, `authorization`); `host`, `user-agent`, `accept` and
    /// `content-length` are set here.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (may hold secrets: the caller zeroes it).
    pub(crate) body: &'a [u8],
}

/// An answer: status and body.
pub(crate) struct FetchResponse {
    /// The status code.
    pub(crate) status: u16,
    /// The body (may hold a token: never log it).
    pub(crate) body: Bytes,
}

/// Why a request failed. Messages carry no body and no header value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// Every address of the host is in a range the route may not reach.
    #[error("{host}: {denied} (allow it in the route's allow_destinations)")]
    Denied {
        /// The host.
        host: String,
        /// The guard's verdict on the first address.
        denied: portcullis_allowlist::DestinationDenied,
    },
    /// The tenant's egress pool has no address of the destination's family.
    #[error("no egress address of the family of {0}")]
    NoEgress(SocketAddr),
    /// No connection could be made.
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The exchange failed after connecting.
    #[error("talking to {addr}: {reason}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The whole request took too long.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer is larger than [`MAX_BODY_BYTES`].
    #[error("the answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// Sends `req` to `target`, within `target.timeout`.
pub(crate) async fn fetch(
    target: &FetchTarget,
    req: FetchRequest<'_>,
) -> Result<FetchResponse, FetchError> {
    tokio::time::timeout(target.timeout, fetch_inner(target, &req))
        .await
        .map_err(|_| FetchError::Timeout(target.timeout))?
}

async fn fetch_inner(
    target: &FetchTarget,
    req: &FetchRequest<'_>,
) -> Result<FetchResponse, FetchError> {
    let endpoint = &target.endpoint;
    let addrs: Vec<SocketAddr> = match endpoint.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, endpoint.port)],
        Err(_) => tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| FetchError::Resolve {
                host: endpoint.host.clone(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    // Checked here, connected to below: no second resolution in between.
    let mut first_denial = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match target.guard.check(a.ip()) {
            Ok(()) => true,
            Err(denied) => {
                first_denial.get_or_insert(denied);
                false
            }
        })
        .take(MAX_ADDRESSES)
        .collect();
    if allowed.is_empty() {
        return Err(match first_denial {
            Some(denied) => FetchError::Denied {
                host: endpoint.host.clone(),
                denied,
            },
            None => FetchError::Resolve {
                host: endpoint.host.clone(),
                reason: "no address".into(),
            },
        });
    }
    let mut last = None;
    for addr in allowed {
        match fetch_from(target, addr, req).await {
            Err(e @ (FetchError::Connect { .. } | FetchError::NoEgress(_))) => last = Some(e),
            other => return other,
        }
    }
    // `allowed` is not empty: every attempt above returned or set `last`.
    Err(last.unwrap_or_else(|| FetchError::Resolve {
        host: endpoint.host.clone(),
        reason: "no address".into(),
    }))
}

/// One attempt against one checked address.
async fn fetch_from(
    target: &FetchTarget,
    addr: SocketAddr,
    req: &FetchRequest<'_>,
) -> Result<FetchResponse, FetchError> {
    let endpoint = &target.endpoint;
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    let opts = &mut peer.options;
    opts.connection_timeout = Some(target.connect_timeout);
    opts.total_connection_timeout = Some(target.connect_timeout * 2);
    opts.read_timeout = Some(target.timeout);
    opts.write_timeout = Some(target.timeout);
    opts.verify_cert = true;
    opts.verify_hostname = true;
    opts.ca = target.ca.clone();
    opts.alpn = ALPN::H1;
    if let Some(egress) = &target.egress {
        let source = egress.pick_for(&addr).ok_or(FetchError::NoEgress(addr))?;
        let mut bind = BindTo::default();
        bind.addr = Some(SocketAddr::new(source, 0));
        opts.bind_to = Some(bind);
    }
    let connect = |e: Box<pingora::Error>| FetchError::Connect {
        addr,
        reason: e.to_string(),
    };
    let http = |e: Box<pingora::Error>| FetchError::Http {
        addr,
        reason: e.to_string(),
    };
    let (mut session, _) = connector().get_http_session(&peer).await.map_err(connect)?;

    let mut head = RequestHeader::build(
        req.method.clone(),
        endpoint.path_and_query.as_bytes(),
        Some(8),
    )
    .map_err(http)?;
    head.insert_header(HOST, endpoint.authority.clone())
        .map_err(http)?;
    head.insert_header(
        USER_AGENT,
        concat!("portcullis/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(http)?;
    head.insert_header(ACCEPT, "application/json")
        .map_err(http)?;
    if req.method != Method::GET || !req.body.is_empty() {
        head.insert_header(CONTENT_LENGTH, req.body.len())
            .map_err(http)?;
    }
    for (name, value) in &req.headers {
        head.insert_header(name.clone(), value.clone())
            .map_err(http)?;
    }
    session
        .write_request_header(Box::new(head))
        .await
        .map_err(http)?;
    if !req.body.is_empty() {
        session.write_body(req.body).await.map_err(http)?;
    }
    session.finish_body().await.map_err(http)?;
    session.read_response().await.map_err(http)?;
    let status = session.get_status().map_or(0, |s| s.as_u16());
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_body_bytes().await.map_err(http)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(FetchResponse {
        status,
        body: body.freeze(),
    })
}

/// The connector for the gateway's own requests: one per process, because creating one loads
/// the platform's trust roots (as the proxy's own connector does once at startup).
fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

impl std::fmt::Debug for FetchTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchTarget")
            .field("endpoint", &self.endpoint.to_string())
            .field("egress", &self.egress)
            .finish_non_exhaustive()
    }
}
