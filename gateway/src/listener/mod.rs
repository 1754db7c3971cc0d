//! Listening sockets, bound by the gateway before Pingora starts.
//!
//! Binding first means: every address that cannot be bound is reported at once, with its
//! address, before anything runs; a configured port 0 ("any free port") gets a real port that
//! is known before the server starts, so it can be reported (`--ready-file`, the admin API's
//! `listeners`) and tests never guess a free port; and no other process can take the port in
//! between. The sockets are handed to Pingora through its listening-socket table — the same
//! table a graceful upgrade fills with the old process's sockets — so Pingora's own listener
//! (buffers, TLS, socket options) serves them unchanged. During a graceful upgrade the
//! inherited sockets win and nothing is bound here.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::path::Path;

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;

/// A socket bound ahead of Pingora, under the address Pingora will be told to listen on.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address the socket is bound to (the real port when port 0 was asked for).
    pub(crate) addr: SocketAddr,
    socket: Option<TcpListener>,
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub(crate) struct BindError {
    /// The address asked for.
    pub(crate) addr: SocketAddr,
    /// Which listener (public, TLS, admin, …).
    pub(crate) what: &'static str,
    /// What the system said.
    #[source]
    pub(crate) source: io::Error,
}

/// A Pingora service whose listeners were bound by [`bind`]: hands the sockets to Pingora's
/// listening-socket table, then starts the service.
pub(crate) struct PreBound<S> {
    inner: S,
    sockets: Vec<(String, TcpListener)>,
}

// === impl Bound ===

impl Bound {
    /// The address to give Pingora's `add_tcp`/`add_tls_with_settings`.
    pub(crate) fn pingora_addr(&self) -> String {
        self.addr.to_string()
    }

    /// The socket itself, for a service that accepts on it without Pingora's listener (the
    /// tunnel listener and the TCP routes).
    pub(crate) fn into_std(self) -> Option<TcpListener> {
        self.socket
    }
}

/// Binds `addr` now (port 0: any free port). The socket is non-blocking, as Pingora's runtime
/// expects of every socket in its table.
pub(crate) fn bind(addr: SocketAddr, what: &'static str) -> Result<Bound, BindError> {
    let fail = |source| BindError { addr, what, source };
    // std sets SO_REUSEADDR on Unix, as Pingora's own bind does.
    let socket = TcpListener::bind(addr).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    let bound = socket.local_addr().map_err(fail)?;
    Ok(Bound {
        addr: bound,
        socket: Some(socket),
    })
}

// === impl PreBound ===

impl<S> PreBound<S> {
    /// `inner`, which was told to listen on the `pingora_addr` of each of `bound`.
    pub(crate) fn new(inner: S, bound: impl IntoIterator<Item = Bound>) -> Self {
        let sockets = bound
            .into_iter()
            .filter_map(|b| {
                let key = b.pingora_addr();
                b.socket.map(|s| (key, s))
            })
            .collect();
        Self { inner, sockets }
    }
}

#[async_trait]
impl<S: Service> Service for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(table) = &fds {
            let mut table = table.lock();
            for (key, socket) in self.sockets.drain(..) {
                if table.get(&key).is_none() {
                    // Pingora owns the descriptor from here (and passes it on in an upgrade).
                    table.add(key, socket.into_raw_fd());
                }
            }
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd)
            .await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }
}

/// Writes `listeners` as JSON to `path` atomically (a temporary file renamed over it), so a
/// reader never sees a half-written file: the signal that every listener is bound.
pub(crate) fn write_ready_file(
    path: &Path,
    listeners: &portcullis_api::Listeners,
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let text = serde_json::to_vec_pretty(listeners).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gets_a_real_port_that_stays_bound() {
        let first = bind("127.0.0.1:0".parse().unwrap(), "test").unwrap();
        let second = bind("127.0.0.1:0".parse().unwrap(), "test").unwrap();
        assert_ne!(first.addr.port(), 0);
        assert_ne!(first.addr, second.addr);
        // Still bound: binding the same port again fails with its address in the message.
        let err = bind(first.addr, "admin").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {} (admin): ", first.addr)),
            "{err}"
        );
    }
}
