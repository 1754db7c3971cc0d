//! [`Guarded`]: the proxy's `ServerApp`, with each connection counted and its stream guarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::{ConnStats, ConnectionLimiter, GuardedStream};
use crate::observe::metrics::ConnectionMetrics;
use crate::runtime::SharedRuntime;

/// How often a stop looks again for connections still waiting for their first request.
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// A `ServerApp` (the proxy) whose connections are counted by a [`ConnectionLimiter`] and
/// served through a [`GuardedStream`]. Everything else is the wrapped app's.
pub(crate) struct Guarded<A> {
    app: Arc<A>,
    limiter: ConnectionLimiter,
    stats: Arc<ConnStats>,
    runtime: SharedRuntime,
    metrics: ConnectionMetrics,
}

// === impl Guarded ===

impl<A> Guarded<A> {
    /// `app`, guarded: `limiter` counts plain-listener connections here (TLS ones before their
    /// handshake), head deadlines come from `runtime` at each accept, head timeouts and
    /// malformed heads count in `metrics`.
    pub(crate) fn new(
        app: Arc<A>,
        limiter: ConnectionLimiter,
        stats: Arc<ConnStats>,
        runtime: SharedRuntime,
        metrics: ConnectionMetrics,
    ) -> Self {
        Self {
            app,
            limiter,
            stats,
            runtime,
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A TLS connection was counted before its handshake (as the L4 stream's tracer).
        let guard = if stream.get_ssl_digest().is_some() {
            None
        } else {
            let peer = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(SocketAddr::ip));
            Some(self.limiter.admit(peer).ok()?)
        };
        let head_timeout = self.runtime.load().config.server.request_header_timeout;
        let stream = GuardedStream::new(
            stream,
            head_timeout,
            Arc::clone(&self.stats),
            &self.metrics,
            guard,
        );
        self.app.process_new(Box::new(stream), shutdown).await
    }

    /// Called by Pingora once the listeners stopped accepting; the wrapped app then closes
    /// every idle connection, and drops any connection that has not sent a request yet. So
    /// first let the connections accepted before the stop deliver their first request (each
    /// is bounded by its head deadline).
    async fn cleanup(&self) {
        let bound =
            self.runtime.load().config.server.request_header_timeout + Duration::from_secs(1);
        let deadline = Instant::now() + bound;
        while self.stats.unsettled() > 0 && Instant::now() < deadline {
            tokio::time::sleep(SETTLE_POLL).await;
        }
        let left = self.stats.unsettled();
        if left > 0 {
            tracing::info!(
                connections = left,
                "stopping: connections that sent no request within the head deadline are closed"
            );
        }
        self.app.cleanup().await;
    }
}
