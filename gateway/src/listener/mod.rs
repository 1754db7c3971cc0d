//! Listening sockets, bound by the gateway before Pingora starts.
//!
//! Binding first means: every address that cannot be bound is reported at once, with its
//! address, before anything runs; a configured port 0 ("any free port") gets a real port that
//! is known before the server starts, so it can be reported (`--ready-file`, the admin API's
//! `listeners`) and tests never guess a free port; and no other process can take the port in
//! between. The sockets are handed to Pingora through its listening-socket table — the same
//! table a graceful upgrade fills with the old process's sockets — so Pingora's own listener
//! (buffers, TLS, socket options) serves them unchanged.
//!
//! During a graceful upgrade (`portcullis run --upgrade`) the running process hands its
//! listening sockets over a Unix socket ([`Inherited::receive`]), keyed by the address each
//! was bound to; an address the new config shares with the old process is taken over, never
//! bound again (it could not be: the old process still listens on it, and the point is that
//! connections waiting in its queue are not lost). Inherited sockets the new config no longer
//! names are closed.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};
use std::path::Path;

use async_trait::async_trait;
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::Service;

/// A socket bound ahead of Pingora (or inherited), under the address Pingora will be told to
/// listen on.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address the socket is bound to (the real port when port 0 was asked for).
    pub(crate) addr: SocketAddr,
    socket: Option<Socket>,
}

/// Where a listening socket came from.
#[derive(Debug)]
enum Socket {
    /// Bound by this process.
    Bound(TcpListener),
    /// Received from the process being upgraded.
    Inherited(RawFd),
}

/// The listening sockets received from the process being replaced, by address.
pub(crate) struct Inherited {
    fds: Fds,
    claimed: HashSet<String>,
}

/// Why the sockets of the running process could not be received.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InheritError {
    /// The upgrade socket's directory does not exist.
    #[error("upgrade socket {0}: its directory does not exist")]
    NoDirectory(String),
    /// Nothing sent the sockets in time.
    #[error(
        "no listening sockets arrived on {path} ({reason}); send SIGQUIT to the running gateway within 5 s of starting this one"
    )]
    Receive {
        /// The upgrade socket.
        path: String,
        /// What failed.
        reason: String,
    },
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
    sockets: Vec<(String, Socket)>,
}

// === impl Bound ===

impl Bound {
    /// The address to give Pingora's `add_tcp`/`add_tls_with_settings`.
    pub(crate) fn pingora_addr(&self) -> String {
        self.addr.to_string()
    }

    /// The socket itself, for a service that accepts on it without Pingora's listener (the
    /// tunnel listener and the TCP routes).
    ///
    /// `None` for a socket inherited in a graceful upgrade: only Pingora's listeners take part
    /// in one (the gateway refuses `--upgrade` when it has a tunnel listener or TCP routes).
    pub(crate) fn into_std(self) -> Option<TcpListener> {
        match self.socket? {
            Socket::Bound(listener) => Some(listener),
            Socket::Inherited(_) => None,
        }
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
        socket: Some(Socket::Bound(socket)),
    })
}

/// Takes over `addr` from the process being upgraded when it listened there, binds it
/// otherwise (a listener the new config adds, or port 0).
pub(crate) fn bind_or_inherit(
    addr: SocketAddr,
    what: &'static str,
    inherited: Option<&mut Inherited>,
) -> Result<Bound, BindError> {
    if let Some(inherited) = inherited {
        if addr.port() != 0 {
            if let Some(fd) = inherited.claim(addr) {
                tracing::info!(%addr, what, "listening socket taken over from the running gateway");
                return Ok(Bound {
                    addr,
                    socket: Some(Socket::Inherited(fd)),
                });
            }
        }
    }
    bind(addr, what)
}

// === impl Inherited ===

impl Inherited {
    /// Waits (about 5 s) on the Unix socket `path` for the running gateway to send its
    /// listening sockets, which it does when it receives `SIGQUIT`.
    pub(crate) fn receive(path: &Path) -> Result<Self, InheritError> {
        let shown = path.display().to_string();
        // Pingora's receiver panics when it cannot bind the socket: check what can be checked.
        if !path.parent().is_some_and(Path::is_dir) {
            return Err(InheritError::NoDirectory(shown));
        }
        let Some(text) = path.to_str() else {
            return Err(InheritError::Receive {
                path: shown,
                reason: "the path is not UTF-8".into(),
            });
        };
        let mut fds = Fds::new();
        fds.get_from_sock(text).map_err(|e| InheritError::Receive {
            path: shown,
            reason: e.to_string(),
        })?;
        Ok(Self {
            fds,
            claimed: HashSet::new(),
        })
    }

    fn claim(&mut self, addr: SocketAddr) -> Option<RawFd> {
        let key = addr.to_string();
        let fd = *self.fds.get(&key)?;
        self.claimed.insert(key);
        Some(fd)
    }

    /// Closes the inherited sockets no listener claimed (a listener the new config dropped):
    /// left open, the kernel would queue connections on them that nobody accepts.
    pub(crate) fn close_unclaimed(mut self) {
        let closed = self.fds.close_unclaimed(&self.claimed);
        if !closed.is_empty() {
            tracing::warn!(
                ?closed,
                "closed inherited listening sockets the new config does not use"
            );
        }
    }
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

// === impl Socket ===

impl Socket {
    /// The descriptor, owned by whoever receives it (Pingora's table).
    fn into_raw_fd(self) -> RawFd {
        match self {
            Socket::Bound(listener) => listener.into_raw_fd(),
            Socket::Inherited(fd) => fd,
        }
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

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
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
