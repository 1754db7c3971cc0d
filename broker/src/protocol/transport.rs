//! Byte transports under the multiplexer: TLS, WebSocket-over-TLS, optionally through an HTTP
//! CONNECT proxy; plaintext only when explicitly asked for.
//!
//! Both transports end in the same thing, a byte stream whose first bytes are [`PREFACE`]
//! followed by the handshake. The server tells them apart by the first four bytes after TLS:
//! `GET ` starts a WebSocket upgrade (to [`WEBSOCKET_PATH`]), anything else must be the
//! binary preface. One listener therefore serves both, and a corporate proxy that only lets
//! HTTP-looking traffic through still reaches the same port.
//!
//! On the WebSocket transport the byte stream is carried in binary messages, each message a
//! chunk of the stream; message boundaries mean nothing.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::frame::PREFACE;
pub(crate) use super::proxy::host_port;
use super::proxy::{self, ProxyConfig, ProxyError};

/// The path of the WebSocket upgrade request.
pub const WEBSOCKET_PATH: &str = "/portcullis/tunnel/v1";

/// The largest WebSocket message we accept or send: a chunk of the byte stream.
const MAX_WS_MESSAGE: usize = 256 * 1024;
/// How much of a write becomes one WebSocket message.
const WS_WRITE_CHUNK: usize = 64 * 1024;

/// Any byte stream a tunnel can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed [`Io`]: the transport once its layers (TCP, proxy, TLS, WebSocket) are stacked.
pub type BoxIo = Box<dyn Io>;

/// How the byte stream is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The tunnel protocol directly on TLS (or on TCP with `insecure_plaintext`).
    Binary,
    /// The tunnel protocol in WebSocket binary messages, for networks that only pass HTTP.
    WebSocket,
}

/// Where and how an agent dials a gateway.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The gateway's host as configured: the TLS server name, the WebSocket `Host`, and the
    /// CONNECT target when a proxy is used.
    pub host: String,
    /// The gateway's tunnel port.
    pub port: u16,
    /// The resolved address to connect to directly; ignored when `proxy` is set (the proxy
    /// resolves the name).
    pub addr: Option<SocketAddr>,
    /// Binary or WebSocket.
    pub transport: Transport,
    /// TLS client settings; `None` only for `insecure_plaintext`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// An HTTP proxy to CONNECT through.
    pub proxy: Option<ProxyConfig>,
    /// Deadline for TCP connect, proxy CONNECT, TLS and WebSocket handshakes together.
    pub timeout: Duration,
}

/// Why a transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// What we dialled.
        target: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The proxy refused or failed the CONNECT.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The TLS handshake failed (certificate not trusted, name mismatch, …).
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// The server name.
        host: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The host is not a valid TLS server name.
    #[error("'{0}' is not a valid TLS server name")]
    ServerName(String),
    /// The WebSocket upgrade failed.
    #[error("WebSocket upgrade failed: {0}")]
    WebSocket(String),
    /// The peer sent something that is not the tunnel protocol.
    #[error("not a tunnel connection: {0}")]
    NotTunnel(String),
    /// Reading or writing failed while setting up.
    #[error("i/o error during transport setup: {0}")]
    Io(#[from] io::Error),
    /// The whole setup took longer than its deadline.
    #[error("transport setup timed out after {0:?}")]
    Timeout(Duration),
}

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls rejected the settings.
    #[error("TLS settings rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A stream that first replays bytes already read from it.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

/// A byte stream carried in WebSocket binary messages.
#[derive(Debug)]
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

/// The ring crypto provider, which this workspace builds rustls with.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS client settings for dialling gateways (or origins): trust `ca_file` (PEM, one or more
/// certificates) when given, else the system's roots. Offers ALPN `http/1.1` only when asked.
///
/// # Errors
///
/// [`TlsConfigError`] when the CA file is unreadable or has no certificate, or no system root
/// could be loaded.
pub fn client_config(
    ca_file: Option<&Path>,
    alpn_http1: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = read_certs(path)?;
            for cert in certs {
                roots.add(cert).map_err(|e| TlsConfigError::Pem {
                    path: path.display().to_string(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(TlsConfigError::Pem {
                    path: "system trust store".into(),
                    reason: "no usable root certificate found; set ca_file".into(),
                });
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn_http1 {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// TLS server settings for a tunnel listener from a PEM certificate chain and private key.
///
/// # Errors
///
/// [`TlsConfigError`] naming the file that is unreadable or has no certificate or key.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsConfigError::Pem {
        path: key_file.display().to_string(),
        reason: format!("no private key: {e}"),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem_err = |reason: String| TlsConfigError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate found".into()));
    }
    Ok(certs)
}

/// Dials a gateway and sets up the transport up to, not including, the preface.
///
/// # Errors
///
/// [`TransportError`] naming the layer that failed.
pub async fn dial(dial: &Dial) -> Result<BoxIo, TransportError> {
    tokio::time::timeout(dial.timeout, dial_inner(dial))
        .await
        .map_err(|_| TransportError::Timeout(dial.timeout))?
}

async fn dial_inner(dial: &Dial) -> Result<BoxIo, TransportError> {
    let tcp = match (&dial.proxy, dial.addr) {
        (Some(proxy), _) => proxy::connect(proxy, &dial.host, dial.port).await?,
        (None, Some(addr)) => {
            TcpStream::connect(addr)
                .await
                .map_err(|source| TransportError::Connect {
                    target: addr.to_string(),
                    source,
                })?
        }
        (None, None) => {
            let target = host_port(&dial.host, dial.port);
            TcpStream::connect(&target)
                .await
                .map_err(|source| TransportError::Connect { target, source })?
        }
    };
    let _ = tcp.set_nodelay(true);
    let io: BoxIo = match &dial.tls {
        Some(tls) => {
            let name =
                ServerName::try_from(dial.host.trim_start_matches('[').trim_end_matches(']'))
                    .map_err(|_| TransportError::ServerName(dial.host.clone()))?
                    .to_owned();
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|source| TransportError::Tls {
                    host: dial.host.clone(),
                    source,
                })?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    match dial.transport {
        Transport::Binary => Ok(io),
        Transport::WebSocket => {
            let scheme = if dial.tls.is_some() { "wss" } else { "ws" };
            let url = format!(
                "{scheme}://{}{WEBSOCKET_PATH}",
                host_port(&dial.host, dial.port)
            );
            let (ws, _) = tokio_tungstenite::client_async_with_config(url, io, Some(ws_config()))
                .await
                .map_err(|e| TransportError::WebSocket(e.to_string()))?;
            Ok(Box::new(WsIo::new(ws)))
        }
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
}

/// Server side: TLS (unless `tls` is `None`), then the transport detection and the preface.
/// Returns the stream positioned at the first handshake frame.
pub(crate) async fn accept<S: Io>(
    io: S,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<(BoxIo, Transport), TransportError> {
    let io: BoxIo = match tls {
        Some(config) => {
            let tls = tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(io)
                .await
                .map_err(|source| TransportError::Tls {
                    host: "agent".into(),
                    source,
                })?;
            Box::new(tls)
        }
        None => Box::new(io),
    };
    let mut io = io;
    let mut first = [0u8; 4];
    io.read_exact(&mut first).await?;
    if &first == b"GET " {
        let prefixed = Prefixed::new(Bytes::copy_from_slice(&first), io);
        // tungstenite's `Callback` fixes the (large) error type.
        #[allow(clippy::result_large_err)]
        let callback = |req: &tungstenite::handshake::server::Request,
                        resp: tungstenite::handshake::server::Response| {
            if req.uri().path() == WEBSOCKET_PATH {
                Ok(resp)
            } else {
                let mut not_found = tungstenite::handshake::server::ErrorResponse::new(Some(
                    "not a tunnel endpoint\n".to_owned(),
                ));
                *not_found.status_mut() = http::StatusCode::NOT_FOUND;
                Err(not_found)
            }
        };
        let ws =
            tokio_tungstenite::accept_hdr_async_with_config(prefixed, callback, Some(ws_config()))
                .await
                .map_err(|e| TransportError::WebSocket(e.to_string()))?;
        let mut io: BoxIo = Box::new(WsIo::new(ws));
        let mut preface = [0u8; PREFACE.len()];
        io.read_exact(&mut preface).await?;
        check_preface(&preface)?;
        Ok((io, Transport::WebSocket))
    } else {
        let mut rest = [0u8; PREFACE.len() - 4];
        io.read_exact(&mut rest).await?;
        let mut preface = [0u8; PREFACE.len()];
        preface[..4].copy_from_slice(&first);
        preface[4..].copy_from_slice(&rest);
        check_preface(&preface)?;
        Ok((io, Transport::Binary))
    }
}

fn check_preface(got: &[u8; 8]) -> Result<(), TransportError> {
    if got == PREFACE {
        Ok(())
    } else {
        Err(TransportError::NotTunnel(format!(
            "expected the tunnel preface, got {:?}",
            String::from_utf8_lossy(got)
        )))
    }
}

/// Agent side: writes the preface.
pub(crate) async fn write_preface(io: &mut BoxIo) -> io::Result<()> {
    io.write_all(PREFACE).await
}

// === impl Prefixed ===

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// === impl WsIo ===

impl<S> WsIo<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn ws_io_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(bytes))) => self.pending = bytes,
                Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                // tungstenite answers pings itself when the stream is polled or flushed.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message on a binary tunnel",
                    )))
                }
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(ws_io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_io_error)?;
        let n = buf.len().min(WS_WRITE_CHUNK);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(ws_io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(ws_io_error(e))),
        }
    }
}
