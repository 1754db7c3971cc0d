//! Pingora's `custom_l4` connector for tunnel routes: an upstream connection is a new `http`
//! stream on one agent's session.
//!
//! The peer carries the agent session chosen in `upstream_peer`, so the stream opens on
//! exactly the agent the request was accounted to, and the peer's `group_key` (tunnel and
//! session) keeps pooled connections from ever crossing agents or tunnels.
//!
//! Pingora 0.9 identifies pooled connections by file descriptor, and a virtual socket has none
//! (-1): such a connection can never be taken from the pool again. Tunnel requests therefore
//! ask for `Connection: close` (see `proxy::forward`): each request gets its own stream, which
//! costs one yamux frame rather than a TCP and TLS handshake, and no stream lingers idle on the
//! agent.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::{Error, ErrorType, Result};
use portcullis_broker::server::{AgentSession, OpenError};
use portcullis_broker::{StreamKind, TunnelStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Opens upstream connections as streams on one agent session.
#[derive(Debug)]
pub(crate) struct TunnelConnector {
    session: AgentSession,
    timeout: Duration,
}

/// A tunnel stream as Pingora's virtual socket.
#[derive(Debug)]
struct TunnelSocket(TunnelStream);

// === impl TunnelConnector ===

impl TunnelConnector {
    /// A connector for `session`, giving up on an open after `timeout` (the route's connect
    /// timeout).
    pub(crate) fn new(session: AgentSession, timeout: Duration) -> Self {
        Self { session, timeout }
    }
}

#[async_trait]
impl L4Connect for TunnelConnector {
    async fn connect(&self, _addr: &SocketAddr) -> Result<Stream> {
        let opened =
            tokio::time::timeout(self.timeout, self.session.open_stream(StreamKind::Http)).await;
        let agent = &self.session.info().agent_id;
        match opened {
            Ok(Ok(stream)) => Ok(Stream::from(VirtualSocketStream::new(Box::new(
                TunnelSocket(stream),
            )))),
            Ok(Err(OpenError::Timeout(_))) | Err(_) => Error::e_explain(
                ErrorType::ConnectTimedout,
                format!("opening a stream to tunnel agent '{agent}' timed out"),
            ),
            // Nothing was sent; `fail_to_connect` decides whether another agent gets a try.
            Ok(Err(e)) => Error::e_explain(
                ErrorType::ConnectError,
                format!("tunnel agent '{agent}': {e}"),
            ),
        }
    }
}

// === impl TunnelSocket ===

impl AsyncRead for TunnelSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl VirtualSocket for TunnelSocket {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> std::io::Result<()> {
        // No-delay and keep-alive belong to the agent's TCP connection, set once for all its
        // streams; heartbeats do the keep-alive's job.
        Ok(())
    }
}
