//! The gateway's side of a tunnel: accept an agent's connection, verify its token, and open
//! streams on it.
//!
//! This module knows nothing about routes, Pingora or config files. The gateway owns the TCP
//! listener and hands each accepted socket to [`accept`], together with its [`TokenLookup`]
//! (backed by the current config snapshot's token hashes) and [`ServerOptions`]. What comes
//! back is an [`AgentSession`]: a cheap-to-clone handle the gateway keeps in its tunnel
//! registry, opens streams on ([`AgentSession::open_stream`]), reads live statistics from
//! ([`AgentSession::stats`], lock-free) and closes on revocation ([`AgentSession::close`]).
//!
//! ```no_run
//! # async fn demo(listener: tokio::net::TcpListener, tokens: std::sync::Arc<portcullis_broker::server::StaticTokens>,
//! #               tls: std::sync::Arc<rustls::ServerConfig>) {
//! use portcullis_broker::protocol::StreamKind;
//! use portcullis_broker::server::{self, ServerOptions};
//!
//! let options = ServerOptions::new(tls);
//! loop {
//!     let Ok((tcp, remote)) = listener.accept().await else { continue };
//!     let (tokens, options) = (tokens.clone(), options.clone());
//!     tokio::spawn(async move {
//!         match server::accept(tcp, remote, &*tokens, &options).await {
//!             Ok(session) => {
//!                 // registry.insert(session.clone()); later, per upstream connection:
//!                 let stream = session.open_stream(StreamKind::Http).await;
//!                 // wrap `stream` in Pingora's VirtualSocketStream …
//!                 let (reason, message) = session.closed().await;
//!                 // registry.remove(session.info().session_id); log reason
//!             }
//!             Err(e) => tracing::warn!(%remote, reason = e.reason(), "tunnel handshake failed: {e}"),
//!         }
//!     });
//! }
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::frame::{
    read_frame, write_frame, Accepted, CloseReason, Frame, FrameIoError, Hello, RefuseCode,
    Refused, StreamKind, PROTOCOL_VERSION,
};
use crate::protocol::mux::{self, Heartbeat, OpenRequest, Shared, TunnelStream};
use crate::protocol::transport::{self, BoxIo, Io, Transport, TransportError};

#[cfg(test)]
mod tests;

/// The longest agent id the gateway accepts.
const MAX_AGENT_ID: usize = 128;
/// The longest agent version string the gateway accepts.
const MAX_AGENT_VERSION: usize = 64;

/// Process-wide session numbering, so registries and pools can key on a session.
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// Looks up the SHA-256 of a presented broker token. The gateway implements this over its
/// config snapshot; compare hashes with [`hashes_equal`] (constant time) or use
/// [`StaticTokens`].
pub trait TokenLookup: Send + Sync {
    /// What the token with this hash may do.
    fn lookup(&self, token_sha256: &[u8; 32]) -> TokenVerdict;
}

/// The answer of a [`TokenLookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// The token opens this tunnel.
    Accept(TunnelGrant),
    /// The token is known but revoked: refused with `revoked`.
    Revoked,
    /// No such token: refused with `bad_token`.
    Unknown,
}

/// The tunnel a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelGrant {
    /// The tunnel's name (`[[tunnels]] name`).
    pub tunnel: String,
    /// The tenant owning it.
    pub tenant: String,
}

/// A fixed token table: every entry is compared, in constant time, on every lookup.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    entries: Vec<([u8; 32], TokenVerdict)>,
}

/// Settings of the gateway's side of every tunnel connection.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TLS settings of the tunnel listener; `None` only for `insecure_plaintext`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Deadline for TLS, transport detection and the hello together. Default 10 s.
    pub handshake_timeout: Duration,
    /// How often each side pings. Sent to the agent. Default 3 s.
    pub heartbeat_interval: Duration,
    /// How long without a byte from the agent before the connection is dropped. Default 9 s.
    pub heartbeat_timeout: Duration,
    /// Deadline for opening a stream (and, for `tcp`, for the agent's verdict). Default 10 s.
    pub open_timeout: Duration,
}

/// Why an agent's connection did not become a session. [`HandshakeError::reason`] gives a
/// bounded label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// TLS, WebSocket upgrade or preface failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The hello frame was unreadable or malformed.
    #[error("malformed hello: {0}")]
    Frame(#[from] FrameIoError),
    /// The first frame was not a hello.
    #[error("expected a hello frame, got {0}")]
    Unexpected(&'static str),
    /// The handshake did not finish within the deadline.
    #[error("handshake not finished within {0:?}")]
    Timeout(Duration),
    /// The agent was refused (and told so).
    #[error("refused agent '{agent_id}': {code}: {message}")]
    Refused {
        /// The reason code sent to the agent.
        code: RefuseCode,
        /// The agent's claimed id (sanitised), for the log.
        agent_id: String,
        /// The explanation sent to the agent.
        message: String,
    },
    /// The control stream could not be opened after the handshake.
    #[error("cannot open the control stream: {0}")]
    Control(String),
}

/// What the gateway knows about a connected agent; fixed for the session's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Unique within this process; use it in pool group keys and registry keys.
    pub session_id: u64,
    /// The tunnel the token granted.
    pub tunnel: String,
    /// The tenant owning the tunnel.
    pub tenant: String,
    /// The agent's stable id (printable, at most 128 characters).
    pub agent_id: String,
    /// The agent's software version.
    pub agent_version: String,
    /// The agent's address as seen by the listener.
    pub remote: SocketAddr,
    /// When the handshake completed.
    pub connected_at: SystemTime,
    /// Binary or WebSocket.
    pub transport: Transport,
    /// Whether TLS was used.
    pub tls: bool,
}

/// A point-in-time copy of a session's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Streams open now (the control stream not included).
    pub open_streams: u64,
    /// Streams opened since the session started.
    pub streams_total: u64,
    /// Streams the agent tried to open, all reset.
    pub rejected_streams: u64,
    /// Stream payload bytes sent to the agent.
    pub bytes_to_agent: u64,
    /// Stream payload bytes received from the agent.
    pub bytes_from_agent: u64,
    /// When the agent's last heartbeat arrived.
    pub last_heartbeat: Option<SystemTime>,
}

/// A live tunnel connection from one agent. Clones share the connection.
#[derive(Clone)]
pub struct AgentSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    info: AgentInfo,
    shared: Arc<Shared>,
    open_tx: mpsc::Sender<OpenRequest>,
    open_timeout: Duration,
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The session has ended.
    #[error("tunnel session closed: {0}")]
    Closed(String),
    /// yamux did not open the stream, or the agent gave no verdict, in time.
    #[error("opening a tunnel stream timed out after {0:?}")]
    Timeout(Duration),
    /// The agent refused a `tcp` stream.
    #[error("agent refused the stream: {reason}: {message}")]
    Refused {
        /// The agent's reason code (`unknown_origin`, `not_tcp`, `origin_unreachable`, …).
        reason: String,
        /// The agent's explanation.
        message: String,
    },
    /// Writing the stream header or reading the verdict failed.
    #[error("tunnel stream failed while opening: {0}")]
    Io(#[from] io::Error),
    /// The agent answered with something that is not a verdict.
    #[error("agent broke the protocol while opening a stream: {0}")]
    Protocol(String),
}

// === impl StaticTokens ===

impl StaticTokens {
    /// An empty table: every token is refused.
    pub fn new() -> Self {
        StaticTokens::default()
    }

    /// Grants `grant` to the token whose SHA-256 is `hash`.
    pub fn insert(&mut self, hash: [u8; 32], grant: TunnelGrant) -> &mut Self {
        self.entries.push((hash, TokenVerdict::Accept(grant)));
        self
    }

    /// Marks the token whose SHA-256 is `hash` as revoked.
    pub fn revoke(&mut self, hash: [u8; 32]) -> &mut Self {
        self.entries.push((hash, TokenVerdict::Revoked));
        self
    }
}

impl TokenLookup for StaticTokens {
    fn lookup(&self, token_sha256: &[u8; 32]) -> TokenVerdict {
        // Look at every entry whatever matches, so timing says nothing about the table.
        let mut found = TokenVerdict::Unknown;
        for (hash, verdict) in &self.entries {
            if bool::from(hash.ct_eq(token_sha256)) && found == TokenVerdict::Unknown {
                found = verdict.clone();
            }
        }
        found
    }
}

/// SHA-256 of a broker token, as the gateway stores it.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses a 64-digit hex SHA-256 (`token_sha256 = ["…"]` in the gateway config).
pub fn parse_sha256_hex(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest.trim(), &mut out).ok()?;
    Some(out)
}

/// Constant-time equality of two token hashes.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

// === impl ServerOptions ===

impl ServerOptions {
    /// Defaults with TLS.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        ServerOptions {
            tls: Some(tls),
            ..ServerOptions::insecure_plaintext()
        }
    }

    /// Defaults without TLS: tokens travel in the clear. Tests and explicit
    /// `insecure_plaintext = true` only.
    pub fn insecure_plaintext() -> Self {
        ServerOptions {
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            heartbeat_timeout: Duration::from_secs(9),
            open_timeout: Duration::from_secs(10),
        }
    }
}

// === impl HandshakeError ===

impl HandshakeError {
    /// A bounded label for metrics and logs: `tls`, `websocket`, `not_tunnel`, `io`,
    /// `malformed`, `timeout`, `bad_token`, `revoked`, `version`, `control`.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Transport(TransportError::Tls { .. }) => "tls",
            HandshakeError::Transport(TransportError::WebSocket(_)) => "websocket",
            HandshakeError::Transport(TransportError::NotTunnel(_)) => "not_tunnel",
            HandshakeError::Transport(TransportError::Timeout(_)) | HandshakeError::Timeout(_) => {
                "timeout"
            }
            HandshakeError::Transport(_) => "io",
            HandshakeError::Frame(FrameIoError::Io(_)) => "io",
            HandshakeError::Frame(FrameIoError::Frame(_)) | HandshakeError::Unexpected(_) => {
                "malformed"
            }
            HandshakeError::Refused { code, .. } => code.as_str(),
            HandshakeError::Control(_) => "control",
        }
    }
}

/// Accepts one agent connection: TLS (per `options.tls`), transport detection, the hello,
/// the token check — all within `options.handshake_timeout` — then yamux and the control
/// stream. A refused agent is told why before the connection closes.
///
/// `io` is the socket the listener accepted; `remote` its peer address.
///
/// # Errors
///
/// [`HandshakeError`]; the connection is closed. Log it with [`HandshakeError::reason`].
pub async fn accept<S: Io>(
    io: S,
    remote: SocketAddr,
    tokens: &dyn TokenLookup,
    options: &ServerOptions,
) -> Result<AgentSession, HandshakeError> {
    let deadline = options.handshake_timeout;
    let (io, transport, hello, grant) = tokio::time::timeout(deadline, async {
        let (mut io, transport) = transport::accept(io, options.tls.as_ref()).await?;
        let hello = match read_frame(&mut io).await {
            Ok(Frame::Hello(hello)) => hello,
            Ok(other) => return Err(HandshakeError::Unexpected(other.name())),
            Err(e @ FrameIoError::Frame(_)) => {
                refuse(&mut io, RefuseCode::Malformed, &e.to_string()).await;
                return Err(HandshakeError::Frame(e));
            }
            Err(e) => return Err(HandshakeError::Frame(e)),
        };
        let grant = match check_hello(&hello, tokens) {
            Ok(grant) => grant,
            Err((code, message)) => {
                refuse(&mut io, code, &message).await;
                return Err(HandshakeError::Refused {
                    code,
                    agent_id: sanitize(&hello.agent_id, MAX_AGENT_ID),
                    message,
                });
            }
        };
        let accepted = Accepted {
            protocol: PROTOCOL_VERSION,
            tunnel: grant.tunnel.clone(),
            tenant: grant.tenant.clone(),
            heartbeat_interval_ms: millis(options.heartbeat_interval),
            heartbeat_timeout_ms: millis(options.heartbeat_timeout),
        };
        write_frame(&mut io, &Frame::Accepted(accepted)).await?;
        Ok((io, transport, hello, grant))
    })
    .await
    .map_err(|_| HandshakeError::Timeout(deadline))??;
    start_session(io, remote, transport, hello, grant, options).await
}

/// Checks protocol version, hello fields and the token.
fn check_hello(
    hello: &Hello,
    tokens: &dyn TokenLookup,
) -> Result<TunnelGrant, (RefuseCode, String)> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err((
            RefuseCode::Version,
            format!(
                "the gateway speaks tunnel protocol {PROTOCOL_VERSION}, the agent speaks {}; \
                 upgrade the agent",
                hello.protocol
            ),
        ));
    }
    let printable = |s: &str, max: usize| {
        !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
    };
    if !printable(&hello.agent_id, MAX_AGENT_ID)
        || !printable(&hello.agent_version, MAX_AGENT_VERSION)
    {
        return Err((
            RefuseCode::Malformed,
            format!(
                "agent_id and agent_version must be printable, non-empty, at most \
                 {MAX_AGENT_ID} and {MAX_AGENT_VERSION} characters"
            ),
        ));
    }
    match tokens.lookup(&token_sha256(hello.token.expose())) {
        TokenVerdict::Accept(grant) => Ok(grant),
        TokenVerdict::Revoked => Err((
            RefuseCode::Revoked,
            "this broker token has been revoked; ask the operator for a new one".into(),
        )),
        TokenVerdict::Unknown => Err((
            RefuseCode::BadToken,
            "unknown broker token; check token_file".into(),
        )),
    }
}

async fn refuse(io: &mut BoxIo, code: RefuseCode, message: &str) {
    let frame = Frame::Refused(Refused {
        code,
        message: message.to_owned(),
    });
    let _ = write_frame(io, &frame).await;
    let _ = io.shutdown().await;
}

async fn start_session(
    io: BoxIo,
    remote: SocketAddr,
    transport: Transport,
    hello: Hello,
    grant: TunnelGrant,
    options: &ServerOptions,
) -> Result<AgentSession, HandshakeError> {
    let (shared, goaway_rx) = Shared::new("agent");
    let heartbeat = Heartbeat {
        interval: options.heartbeat_interval,
        timeout: options.heartbeat_timeout,
    };
    let on_inbound = {
        let shared = shared.clone();
        let agent_id = hello.agent_id.clone();
        move |stream: yamux::Stream| {
            // Only the gateway opens streams. Dropping an unanswered inbound stream resets it.
            let before = shared.rejected_streams.fetch_add(1, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(
                    agent_id = %agent_id,
                    %remote,
                    "agent tried to open a stream toward the gateway; reset (further attempts \
                     are only counted)"
                );
            }
            drop(stream);
        }
    };
    let open_tx = mux::spawn(
        io,
        yamux::Mode::Server,
        shared.clone(),
        heartbeat,
        on_inbound,
    );
    let session = AgentSession {
        inner: Arc::new(SessionInner {
            info: AgentInfo {
                session_id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
                tunnel: grant.tunnel,
                tenant: grant.tenant,
                agent_id: hello.agent_id,
                agent_version: hello.agent_version,
                remote,
                connected_at: SystemTime::now(),
                transport,
                tls: options.tls.is_some(),
            },
            shared: shared.clone(),
            open_tx,
            open_timeout: options.open_timeout,
        }),
    };
    let control = match session.raw_open().await {
        Ok(stream) => stream,
        Err(e) => {
            shared.abort(CloseReason::ProtocolError, "cannot open the control stream");
            return Err(HandshakeError::Control(e.to_string()));
        }
    };
    let mut control = TunnelStream::new_control(control, shared.clone());
    if let Err(e) = write_frame(&mut control, &Frame::Open(StreamKind::Control)).await {
        shared.abort(CloseReason::ProtocolError, "cannot open the control stream");
        return Err(HandshakeError::Control(e.to_string()));
    }
    tokio::spawn(mux::run_control(control, shared, heartbeat, goaway_rx));
    Ok(session)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Keeps at most `max` printable characters, for logging what an agent claimed.
fn sanitize(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

// === impl AgentSession ===

impl AgentSession {
    /// Who is connected.
    pub fn info(&self) -> &AgentInfo {
        &self.inner.info
    }

    /// The live counters, read without locks.
    pub fn stats(&self) -> SessionStats {
        let s = &self.inner.shared;
        let heartbeat = s.last_heartbeat_unix_ms.load(Ordering::Relaxed);
        SessionStats {
            open_streams: s.open_streams.load(Ordering::Relaxed),
            streams_total: s.streams_total.load(Ordering::Relaxed),
            rejected_streams: s.rejected_streams.load(Ordering::Relaxed),
            bytes_to_agent: s.bytes_out.load(Ordering::Relaxed),
            bytes_from_agent: s.bytes_in.load(Ordering::Relaxed),
            last_heartbeat: (heartbeat > 0).then(|| UNIX_EPOCH + Duration::from_millis(heartbeat)),
        }
    }

    /// Opens a stream of `kind` toward the agent.
    ///
    /// For [`StreamKind::Http`] the stream is ready at once: write an HTTP/1.1 request with
    /// `Host: <origin name>`. For [`StreamKind::Tcp`] this waits for the agent's verdict (it
    /// connects to the origin first) and the stream then carries raw bytes.
    ///
    /// # Errors
    ///
    /// [`OpenError`]: the session is closed, the agent refused, or the open timed out.
    pub async fn open_stream(&self, kind: StreamKind) -> Result<TunnelStream, OpenError> {
        if matches!(kind, StreamKind::Control) {
            return Err(OpenError::Protocol(
                "the control stream is opened by the session itself".into(),
            ));
        }
        let timeout = self.inner.open_timeout;
        let stream = tokio::time::timeout(timeout, self.raw_open())
            .await
            .map_err(|_| OpenError::Timeout(timeout))??;
        let mut stream = TunnelStream::new(stream, self.inner.shared.clone());
        let is_tcp = matches!(kind, StreamKind::Tcp { .. });
        write_frame(&mut stream, &Frame::Open(kind))
            .await
            .map_err(frame_io_to_open)?;
        if is_tcp {
            match tokio::time::timeout(timeout, read_frame(&mut stream)).await {
                Err(_) => return Err(OpenError::Timeout(timeout)),
                Ok(Ok(Frame::OpenOk)) => {}
                Ok(Ok(Frame::OpenRefused(refused))) => {
                    return Err(OpenError::Refused {
                        reason: refused.reason,
                        message: refused.message,
                    })
                }
                Ok(Ok(other)) => {
                    return Err(OpenError::Protocol(format!(
                        "expected open_ok or open_refused, got {}",
                        other.name()
                    )))
                }
                Ok(Err(e)) => return Err(frame_io_to_open(e)),
            }
        }
        Ok(stream)
    }

    async fn raw_open(&self) -> Result<yamux::Stream, OpenError> {
        let closed = || OpenError::Closed(self.close_message());
        if self.inner.shared.is_done() {
            return Err(closed());
        }
        let (tx, rx) = oneshot::channel();
        self.inner.open_tx.send(tx).await.map_err(|_| closed())?;
        match rx.await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(OpenError::Closed(e.to_string())),
            Err(_) => Err(closed()),
        }
    }

    fn close_message(&self) -> String {
        match self.inner.shared.reason() {
            Some((reason, message)) => format!("{reason}: {message}"),
            None => "closed".into(),
        }
    }

    /// Closes the session: sends a go-away with `reason` (e.g. [`CloseReason::Revoked`] when a
    /// reload removed the token) and drops the connection; open streams fail. Returns at once;
    /// await [`AgentSession::closed`] to know it is done.
    ///
    /// Dropping the last clone of a session closes it the same way, with
    /// [`CloseReason::Shutdown`].
    pub fn close(&self, reason: CloseReason, message: &str) {
        self.inner.shared.close(reason, message);
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_done()
    }

    /// Resolves when the connection has ended, with why.
    pub async fn closed(&self) -> (CloseReason, String) {
        self.inner.shared.closed().await;
        self.inner
            .shared
            .reason()
            .cloned()
            .unwrap_or((CloseReason::ConnectionLost, "connection ended".into()))
    }
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        // The last handle is gone: nobody can open streams any more, so end the connection
        // rather than leak it.
        self.shared
            .close(CloseReason::Shutdown, "the gateway dropped the session");
    }
}

fn frame_io_to_open(e: FrameIoError) -> OpenError {
    match e {
        FrameIoError::Io(e) => OpenError::Io(e),
        FrameIoError::Frame(e) => OpenError::Protocol(e.to_string()),
    }
}

impl fmt::Debug for AgentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSession")
            .field("info", &self.inner.info)
            .field("closed", &self.is_closed())
            .finish()
    }
}
