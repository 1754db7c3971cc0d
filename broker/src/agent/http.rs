//! Serving the gateway's streams: HTTP/1.1 requests to named origins under the agent's rules,
//! and raw TCP to origins of kind `tcp`.
//!
//! For each HTTP request, in order: the `Host` header (port ignored, case-insensitive) names
//! the origin — unknown: 403 `agent_denied` / `unknown_origin`; the path is normalised with
//! the allowlist crate — traversal or ambiguous encoding: 403 / `path`; the origin's accept
//! rules are checked — no match: 403 / `not_accepted` (the rules themselves are never
//! revealed). Then the caller's copies of the origin's headers and all hop-by-hop headers are
//! dropped, the origin's headers injected, and the request forwarded to the origin's URL (its
//! base path + the normalised path + the query as sent). Bodies stream both ways through
//! hyper with backpressure; nothing is buffered whole. An origin that cannot be reached is
//! 502 `agent_origin_unreachable`, one that does not answer in `response_timeout_ms` is 504
//! `agent_origin_timeout`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::net::TcpStream;

use super::audit::{AuditLog, RequestLine};
use super::config::{AgentConfig, HttpOrigin, OriginKind};
use crate::protocol::frame::{write_frame, Frame as TunnelFrame, OpenRefused};
use crate::protocol::mux::TunnelStream;

/// The body the agent answers with.
type ResponseBody = UnsyncBoxBody<Bytes, hyper::Error>;
type OriginClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, CountingBody<Incoming>>;

/// Hop-by-hop headers, never forwarded in either direction (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Serves requests for the configured origins; shared by every stream.
pub struct Handler {
    config: Arc<AgentConfig>,
    audit: AuditLog,
    clients: HashMap<String, OriginClient>,
}

/// A body that counts its bytes and, when dropped, writes the request's audit line.
pub struct CountingBody<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    /// Held only for its `Drop`, which writes the audit line.
    _audit: Option<AuditOnDrop>,
}

/// The audit line of one request, written when the response body is done (or abandoned).
struct AuditOnDrop {
    audit: AuditLog,
    facts: RequestFacts,
    status: u16,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

/// Facts about a request gathered before the decision.
struct RequestFacts {
    started: Instant,
    request_id: Option<String>,
    origin: String,
    method: String,
    path: String,
}

// === impl Handler ===

impl Handler {
    /// Builds one pooled HTTP client per HTTP origin.
    ///
    /// # Errors
    ///
    /// rustls rejects the TLS settings (only if the crypto provider is unusable).
    pub fn new(config: Arc<AgentConfig>, audit: AuditLog) -> Result<Self, rustls::Error> {
        let mut clients = HashMap::new();
        for origin in &config.origins {
            let OriginKind::Http(http) = &origin.kind else {
                continue;
            };
            let mut connector = HttpConnector::new();
            connector.enforce_http(false);
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(origin.connect_timeout));
            let tls = match &http.tls {
                Some(tls) => (**tls).clone(),
                None => plain_client_tls()?,
            };
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(connector);
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(32)
                .build(https);
            clients.insert(origin.name.clone(), client);
        }
        Ok(Handler {
            config,
            audit,
            clients,
        })
    }

    /// Handles one request from the gateway.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let facts = RequestFacts {
            started: Instant::now(),
            request_id: req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(|s| printable(s, 128)),
            origin: host_of(&req).unwrap_or_default(),
            method: req.method().as_str().to_owned(),
            path: redact_query(req.uri().path(), req.uri().query()),
        };
        let Some(origin) = self.config.origin(&facts.origin) else {
            return self.deny(
                facts,
                "unknown_origin",
                "no origin with this name on the agent",
            );
        };
        let OriginKind::Http(http) = &origin.kind else {
            return self.deny(facts, "not_http", "this origin accepts tcp streams only");
        };
        let normalized = match portcullis_allowlist::normalize_path(req.uri().path()) {
            Ok(path) => path.into_owned(),
            Err(_) => return self.deny(facts, "path", "the request path is not acceptable"),
        };
        let mut facts = facts;
        facts.path = redact_query(&normalized, req.uri().query());
        let headers: Vec<(&str, &[u8])> = req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        if http
            .accept
            .check_with_headers(
                req.method().as_str(),
                &normalized,
                req.uri().query(),
                &headers,
            )
            .is_err()
        {
            return self.deny(
                facts,
                "not_accepted",
                "the agent's accept rules do not allow this request",
            );
        }
        let Some(client) = self.clients.get(&origin.name) else {
            return self.deny(facts, "unknown_origin", "no client for this origin");
        };
        let uri = match origin_uri(http, &normalized, req.uri().query()) {
            Ok(uri) => uri,
            Err(_) => return self.deny(facts, "path", "the request path is not acceptable"),
        };
        let (parts, body) = req.into_parts();
        let mut out = Request::builder()
            .method(parts.method)
            .uri(uri)
            .version(http::Version::HTTP_11);
        if let Some(headers) = out.headers_mut() {
            *headers = forwardable_headers(parts.headers);
            for (name, _) in &http.headers {
                headers.remove(name);
            }
            if let Ok(host) = HeaderValue::from_str(http.authority.as_str()) {
                headers.insert(header::HOST, host);
            }
            for (name, value) in &http.headers {
                if let Ok(mut value) = HeaderValue::from_str(value.expose_secret()) {
                    value.set_sensitive(true);
                    headers.append(name.clone(), value);
                }
            }
        }
        let bytes_in = Arc::new(AtomicU64::new(0));
        let body = CountingBody {
            inner: body,
            counter: bytes_in.clone(),
            _audit: None,
        };
        let out = match out.body(body) {
            Ok(out) => out,
            Err(_) => return self.deny(facts, "path", "the request could not be rebuilt"),
        };
        match tokio::time::timeout(origin.response_timeout, client.request(out)).await {
            Err(_) => self.fail(
                facts,
                StatusCode::GATEWAY_TIMEOUT,
                "agent_origin_timeout",
                &bytes_in,
                "origin did not answer in time",
            ),
            Ok(Err(e)) => {
                tracing::warn!(origin = %origin.name, "origin unreachable: {}", error_chain(&e));
                self.fail(
                    facts,
                    StatusCode::BAD_GATEWAY,
                    "agent_origin_unreachable",
                    &bytes_in,
                    "the agent could not reach the origin",
                )
            }
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                parts.headers = forwardable_headers(parts.headers);
                let bytes_out = Arc::new(AtomicU64::new(0));
                let body = CountingBody {
                    inner: body,
                    counter: bytes_out.clone(),
                    _audit: Some(AuditOnDrop {
                        audit: self.audit.clone(),
                        facts,
                        status: parts.status.as_u16(),
                        bytes_in,
                        bytes_out,
                    }),
                };
                Response::from_parts(parts, UnsyncBoxBody::new(body))
            }
        }
    }

    fn deny(&self, facts: RequestFacts, reason: &str, message: &str) -> Response<ResponseBody> {
        self.audit
            .request(&facts.audit_line("denied", Some(reason), 403, 0, 0));
        let body = json!({
            "error": "agent_denied",
            "reason": reason,
            "message": message,
            "origin": facts.origin,
            "request_id": facts.request_id,
        });
        json_response(StatusCode::FORBIDDEN, &body)
    }

    fn fail(
        &self,
        facts: RequestFacts,
        status: StatusCode,
        code: &str,
        bytes_in: &AtomicU64,
        message: &str,
    ) -> Response<ResponseBody> {
        self.audit.request(&facts.audit_line(
            "allowed",
            Some(code),
            status.as_u16(),
            bytes_in.load(Ordering::Relaxed),
            0,
        ));
        let body = json!({
            "error": code,
            "message": message,
            "origin": facts.origin,
            "request_id": facts.request_id,
        });
        json_response(status, &body)
    }
}

/// Serves HTTP/1.1 on one `http` stream until the gateway closes it.
pub async fn serve(stream: TunnelStream, handler: Arc<Handler>) {
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!("http stream ended: {e}");
    }
}

/// Serves one `tcp` stream: verdict, then a byte pipe to the origin.
pub async fn serve_tcp(
    mut stream: TunnelStream,
    origin_name: &str,
    handler: &Handler,
    gateway: &str,
) {
    let started = Instant::now();
    let refuse = |reason: &'static str, message: String| (reason, message);
    let target = match handler.config.origin(origin_name) {
        None => Err(refuse(
            "unknown_origin",
            format!("no origin named '{origin_name}'"),
        )),
        Some(origin) => match &origin.kind {
            OriginKind::Tcp { host, port } => Ok((host.clone(), *port, origin.connect_timeout)),
            OriginKind::Http(_) => Err(refuse(
                "not_tcp",
                format!("origin '{origin_name}' is not a tcp origin"),
            )),
        },
    };
    let connected = match target {
        Err(e) => Err(e),
        Ok((host, port, timeout)) => {
            match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
                Ok(Ok(tcp)) => Ok(tcp),
                Ok(Err(e)) => Err(refuse(
                    "origin_unreachable",
                    format!("cannot connect to origin '{origin_name}': {e}"),
                )),
                Err(_) => Err(refuse(
                    "origin_unreachable",
                    format!("connecting to origin '{origin_name}' timed out"),
                )),
            }
        }
    };
    let audit = |decision: &str, reason: Option<&str>, up: u64, down: u64| {
        handler.audit.write(json!({
            "event": "tcp",
            "gateway": gateway,
            "origin": origin_name,
            "decision": decision,
            "reason": reason,
            "bytes_in": up,
            "bytes_out": down,
            "duration_ms": ms(started),
        }));
    };
    let mut tcp = match connected {
        Ok(tcp) => tcp,
        Err((reason, message)) => {
            tracing::warn!(origin = %origin_name, reason, "tcp stream refused: {message}");
            audit("denied", Some(reason), 0, 0);
            let frame = TunnelFrame::OpenRefused(OpenRefused {
                reason: reason.to_owned(),
                message,
            });
            let _ = write_frame(&mut stream, &frame).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    if write_frame(&mut stream, &TunnelFrame::OpenOk)
        .await
        .is_err()
    {
        audit("allowed", Some("gateway_gone"), 0, 0);
        return;
    }
    match tokio::io::copy_bidirectional(&mut stream, &mut tcp).await {
        Ok((up, down)) => audit("allowed", None, up, down),
        Err(e) => {
            tracing::debug!(origin = %origin_name, "tcp stream ended: {e}");
            audit("allowed", Some("aborted"), 0, 0);
        }
    }
}

/// The origin name from `Host` (or an absolute URI), lowercased, without port.
fn host_of(req: &Request<Incoming>) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host.as_str(),
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

fn origin_uri(origin: &HttpOrigin, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let mut path_and_query = String::with_capacity(origin.base_path.len() + path.len() + 16);
    path_and_query.push_str(&origin.base_path);
    path_and_query.push_str(path);
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Uri::builder()
        .scheme(origin.scheme.clone())
        .authority(origin.authority.clone())
        .path_and_query(path_and_query)
        .build()
}

/// Drops hop-by-hop headers, including those the `Connection` header names.
fn forwardable_headers(mut headers: HeaderMap) -> HeaderMap {
    // Runs twice a request: one scan of the names finds the few to remove (usually just
    // `Connection`), rather than nine removals of absent names.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return headers;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `close` is a connection option, never a header name (RFC 9110 §7.6.1), and the
        // hop-by-hop names go below anyway.
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|hop| hop.as_str().eq_ignore_ascii_case(token))
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (hop, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(hop);
        }
    }
    headers
}

/// `text` without control characters, at most `max` characters.
fn printable(text: &str, max: usize) -> String {
    // Paths and request ids are printable ASCII in practice: then this is a copy.
    if text.len() <= max && text.bytes().all(|b| b.is_ascii() && !b.is_ascii_control()) {
        return text.to_owned();
    }
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// `/a?x=1&y` → `/a?x&y`: parameter names only, never values.
fn redact_query(path: &str, query: Option<&str>) -> String {
    let mut out = printable(path, 2048);
    if let Some(q) = query {
        out.push('?');
        for (i, name) in q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
            .enumerate()
        {
            if i > 0 {
                out.push('&');
            }
            out.push_str(name);
        }
    }
    out
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ResponseBody> {
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(UnsyncBoxBody::new(
        Full::new(bytes).map_err(|never: Infallible| match never {}),
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn ms(started: Instant) -> f64 {
    (started.elapsed().as_micros() as f64) / 1000.0
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// TLS settings for the https connector of a plain-http origin (never used to connect).
fn plain_client_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::protocol::transport::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

// === impl CountingBody ===

impl<B: Body<Data = Bytes> + Unpin> Body for CountingBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl RequestFacts ===

impl RequestFacts {
    /// This request's `request` audit line; the duration runs until now.
    fn audit_line<'a>(
        &'a self,
        decision: &'a str,
        reason: Option<&'a str>,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
    ) -> RequestLine<'a> {
        RequestLine {
            event: "request",
            request_id: self.request_id.as_deref(),
            origin: &self.origin,
            method: &self.method,
            path: &self.path,
            decision,
            reason,
            status,
            bytes_in,
            bytes_out,
            duration_ms: ms(self.started),
        }
    }
}

// === impl AuditOnDrop ===

impl Drop for AuditOnDrop {
    fn drop(&mut self) {
        self.audit.request(&self.facts.audit_line(
            "allowed",
            None,
            self.status,
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let all_hop = map(&[
            ("Connection", "close, X-Named , keep-alive,,Upgrade"),
            ("Connection", "x-other"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic eA=="),
            ("TE", "trailers"),
            ("Trailer", "x-sum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("X-Named", "1"),
            ("X-Other", "2"),
            ("Close", "kept"),
            ("Accept", "*/*"),
            ("X-Request-Id", "r-1"),
        ]);
        assert_eq!(
            names(&forwardable_headers(all_hop)),
            ["accept", "close", "x-request-id"]
        );
        // Each hop-by-hop header alone is dropped too.
        for hop in &HOP_BY_HOP {
            let one = map(&[(hop.as_str(), "v"), ("accept", "*/*")]);
            assert_eq!(names(&forwardable_headers(one)), ["accept"], "{hop}");
        }
        let none = map(&[("accept", "*/*"), ("x-a", "1"), ("x-a", "2")]);
        let kept = forwardable_headers(none.clone());
        assert_eq!(kept, none);
    }

    #[test]
    fn the_audited_path_keeps_query_names_only_and_no_controls() {
        assert_eq!(redact_query("/a/b", None), "/a/b");
        assert_eq!(redact_query("/a", Some("")), "/a?");
        assert_eq!(redact_query("/a", Some("x=1&y&&z=a=b")), "/a?x&y&z");
        assert_eq!(redact_query("/a\u{7f}b\u{85}ü", None), "/abü");
        let long = "/".repeat(3000);
        assert_eq!(redact_query(&long, None).len(), 2048);
        assert_eq!(printable("req-\u{1b}1", 128), "req-1");
        assert_eq!(printable(&"é".repeat(200), 128).chars().count(), 128);
    }
}
