//! Two Pingora services on one runtime.
//!
//! Pingora gives every service its own runtime, so its own threads. A tunnelled request
//! crosses two services, though. The proxy's task writes the request into a yamux stream. The
//! tunnel service's connection driver frames it onto the agent's connection. On separate
//! runtimes every frame in either direction wakes a task on another thread (an `eventfd`
//! write and an `epoll_wait`), and on a busy core each wake is a context switch. Run on the
//! proxy's runtime, the driver is woken in place. [`Colocated`] starts the tunnel service's
//! accept loops on the proxy's runtime, beside the proxy's own listeners. Every task they
//! spawn (handshakes, drivers, TCP routes) lands there too.

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;

/// `lead` and `companion` started together on `lead`'s runtime: `lead`'s name, threads and
/// runtime options.
pub(super) struct Colocated<L, C> {
    lead: L,
    companion: C,
}

impl<L: Service, C: Service> Colocated<L, C> {
    /// `companion` runs on the runtime Pingora makes for `lead`.
    pub(super) fn new(lead: L, companion: C) -> Self {
        Self { lead, companion }
    }
}

#[async_trait]
impl<L: Service, C: Service> Service for Colocated<L, C> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        // Both run until the shutdown signal: each stops accepting then, as it would alone.
        tokio::join!(
            self.lead
                .start_service(fds.clone(), shutdown.clone(), listeners_per_fd),
            self.companion
                .start_service(fds, shutdown, listeners_per_fd),
        );
    }

    fn name(&self) -> &str {
        self.lead.name()
    }

    fn threads(&self) -> Option<usize> {
        self.lead.threads()
    }

    fn runtime_opts_override(
        &self,
        global: &pingora::server::RuntimeOpts,
    ) -> Option<pingora::server::RuntimeOpts> {
        self.lead.runtime_opts_override(global)
    }

    /// Both services' sockets; unknown (no cleanup of the handed-over table) if either
    /// does not declare its own.
    fn listen_addresses(&self) -> Option<Vec<String>> {
        let mut addresses = self.lead.listen_addresses()?;
        addresses.extend(self.companion.listen_addresses()?);
        Some(addresses)
    }
}
