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
//!
//! The tunnel listener and the TCP routes' listeners are accepted on by the gateway's own
//! tunnel service, not by Pingora's listener, but they travel in the same table: the service
//! puts a duplicate of each socket in it ([`share`]) under a key of its own
//! ([`Role::key`]: `tunnel:ADDR`, `tcp_route:ADDR`, never a bare address like Pingora's), so
//! Pingora hands them over with its own and the new process takes them over like any other
//! ([`Bound::into_std`]). A socket is taken over by its address whatever it was used for in
//! the old process: a listening TCP socket is the same socket whoever accepts on it.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// The most listening sockets one graceful upgrade hands over: Pingora's receiving side reads
/// at most 32 descriptors from the upgrade socket.
pub(crate) const MAX_HANDED_OVER: usize = 32;

/// A socket bound ahead of Pingora (or inherited), under the address Pingora will be told to
/// listen on.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The address the socket is bound to (the real port when port 0 was asked for).
    pub(crate) addr: SocketAddr,
    role: Role,
    socket: Option<Socket>,
}

/// Who accepts on a listening socket, which decides its key in the listening-socket table
/// that a graceful upgrade hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Pingora's listener (the proxy, the admin API): keyed by the bare address, as Pingora
    /// looks its sockets up.
    Pingora,
    /// The tunnel listener agents dial.
    Tunnel,
    /// A `[[tcp_routes]]` listener.
    TcpRoute,
}

/// Where a listening socket came from.
#[derive(Debug)]
enum Socket {
    /// Bound by this process.
    Bound(TcpListener),
    /// Received from the process being upgraded.
    Inherited(OwnedFd),
}

/// The listening sockets received from the process being replaced, by their key in its
/// listening-socket table.
#[derive(Debug)]
pub(crate) struct Inherited {
    fds: HashMap<String, OwnedFd>,
}

/// How long [`Inherited::receive`] waits for the running gateway to send its sockets (Pingora's
/// own receiver waits about as long).
const RECEIVE_WAIT: Duration = Duration::from_secs(6);

/// The largest key list Pingora sends (its sending buffer).
const KEYS_BUFFER: usize = 2048;

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

    /// Whether the socket was taken over from the process being upgraded.
    pub(crate) fn is_inherited(&self) -> bool {
        matches!(self.socket, Some(Socket::Inherited(_)))
    }

    /// The key of the socket in the listening-socket table handed over in an upgrade.
    pub(crate) fn table_key(&self) -> String {
        self.role.key(self.addr)
    }

    /// The socket itself (non-blocking), for a service that accepts on it without Pingora's
    /// listener (the tunnel listener and the TCP routes). A socket inherited in a graceful
    /// upgrade is taken over here: the listener owns its descriptor from now on. The service
    /// puts a duplicate in Pingora's table ([`share`]) so the next upgrade passes it on.
    ///
    /// # Errors
    ///
    /// The socket was already given away, or cannot be made non-blocking.
    pub(crate) fn into_std(self) -> io::Result<TcpListener> {
        let listener = match self.socket {
            Some(Socket::Bound(listener)) => listener,
            Some(Socket::Inherited(fd)) => TcpListener::from(fd),
            None => {
                return Err(io::Error::other(format!(
                    "the socket of {} was already given away",
                    self.addr
                )))
            }
        };
        // Inherited sockets share the old process's file status flags, which were
        // non-blocking; set it anyway, as tokio requires it.
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

// === impl Role ===

impl Role {
    /// The key under which a socket of this role and address is handed over. The prefixes
    /// keep the gateway's own sockets apart from Pingora's, whose keys are bare addresses.
    pub(crate) fn key(self, addr: SocketAddr) -> String {
        match self {
            Role::Pingora => addr.to_string(),
            Role::Tunnel => format!("tunnel:{addr}"),
            Role::TcpRoute => format!("tcp_route:{addr}"),
        }
    }
}

/// Binds `addr` now (port 0: any free port), for Pingora's listener. The socket is
/// non-blocking, as Pingora's runtime expects of every socket in its table.
pub(crate) fn bind(addr: SocketAddr, what: &'static str) -> Result<Bound, BindError> {
    bind_as(addr, what, Role::Pingora)
}

fn bind_as(addr: SocketAddr, what: &'static str, role: Role) -> Result<Bound, BindError> {
    let fail = |source| BindError { addr, what, source };
    // std sets SO_REUSEADDR on Unix, as Pingora's own bind does.
    let socket = TcpListener::bind(addr).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    let bound = socket.local_addr().map_err(fail)?;
    Ok(Bound {
        addr: bound,
        role,
        socket: Some(Socket::Bound(socket)),
    })
}

/// Takes over `addr` from the process being upgraded when it listened there (whatever it
/// used the socket for), binds it otherwise (a listener the new config adds, or port 0).
pub(crate) fn bind_or_inherit(
    addr: SocketAddr,
    what: &'static str,
    role: Role,
    inherited: Option<&mut Inherited>,
) -> Result<Bound, BindError> {
    if let Some(inherited) = inherited {
        if addr.port() != 0 {
            if let Some(fd) = inherited.claim(addr) {
                tracing::info!(%addr, what, "listening socket taken over from the running gateway");
                return Ok(Bound {
                    addr,
                    role,
                    socket: Some(Socket::Inherited(fd)),
                });
            }
        }
    }
    bind_as(addr, what, role)
}

/// Puts a duplicate of `socket`, which this process accepts on itself, in Pingora's
/// listening-socket table under `key` (see [`Bound::table_key`]), unless the key is taken.
/// The table owns the duplicate (Pingora sends it to the new process on `SIGQUIT`); the
/// caller keeps its own descriptor, and closing it when it stops accepting leaves the socket
/// open for the new process.
///
/// # Errors
///
/// The descriptor cannot be duplicated (descriptor limit).
pub(crate) fn share(fds: &ListenFds, key: String, socket: &TcpListener) -> io::Result<()> {
    let mut table = fds.lock();
    if table.get(&key).is_none() {
        table.add(key, socket.try_clone()?.into_raw_fd());
    }
    Ok(())
}

// === impl Inherited ===

impl Inherited {
    /// Waits (about 5 s) on the Unix socket `path` for the running gateway to send its
    /// listening sockets, which it does when it receives `SIGQUIT`.
    ///
    /// This is the receiving side of Pingora's transfer (one message: the table's keys,
    /// space-separated, with the descriptors in the same order as `SCM_RIGHTS`), written here
    /// so that each descriptor arrives owned (`OwnedFd`) rather than as a bare number.
    pub(crate) fn receive(path: &Path) -> Result<Self, InheritError> {
        let fail = |reason: String| InheritError::Receive {
            path: path.display().to_string(),
            reason,
        };
        if !path.parent().is_some_and(Path::is_dir) {
            return Err(InheritError::NoDirectory(path.display().to_string()));
        }
        // A socket file left by an earlier upgrade.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(format!("cannot remove the old socket file: {e}"))),
        }
        let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
        let received = receive_on(&listener).map_err(fail);
        let _ = std::fs::remove_file(path);
        received
    }

    /// The inherited socket listening on `addr`, under whichever role's key the old process
    /// sent it; each is handed out once.
    fn claim(&mut self, addr: SocketAddr) -> Option<OwnedFd> {
        [Role::Pingora, Role::Tunnel, Role::TcpRoute]
            .into_iter()
            .find_map(|role| self.fds.remove(&role.key(addr)))
    }

    /// Closes the inherited sockets no listener claimed (a listener the new config dropped):
    /// left open, the kernel would queue connections on them that nobody accepts.
    pub(crate) fn close_unclaimed(self) {
        let mut closed: Vec<String> = self.fds.into_keys().collect();
        if !closed.is_empty() {
            closed.sort();
            tracing::warn!(
                ?closed,
                "closed inherited listening sockets the new config does not use"
            );
        }
    }
}

/// Accepts the old process's connection on `listener` (bounded wait) and reads its one message.
fn receive_on(listener: &UnixListener) -> Result<Inherited, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + RECEIVE_WAIT;
    let conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "nothing connected within {} s",
                        RECEIVE_WAIT.as_secs()
                    ));
                }
                // The old process connects when an operator signals it; nothing to wait on.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    // The sender writes its single message right after connecting.
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(RECEIVE_WAIT))
        .map_err(|e| e.to_string())?;
    let mut keys = [0u8; KEYS_BUFFER];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_HANDED_OVER))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        &conn,
        &mut [io::IoSliceMut::new(&mut keys)],
        &mut control,
        // Not inherited by anything this process may run.
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("reading the sockets: {e}"))?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    let text = std::str::from_utf8(&keys[..msg.bytes.min(KEYS_BUFFER)])
        .map_err(|_| "the socket keys are not UTF-8".to_owned())?;
    let keys: Vec<&str> = text.split_ascii_whitespace().collect();
    if keys.len() != fds.len() {
        return Err(format!(
            "{} socket keys but {} descriptors (more than {MAX_HANDED_OVER} sockets?)",
            keys.len(),
            fds.len()
        ));
    }
    Ok(Inherited {
        fds: keys.into_iter().map(str::to_owned).zip(fds).collect(),
    })
}

// === impl PreBound ===

impl<S> PreBound<S> {
    /// `inner`, which was told to listen on the `pingora_addr` of each of `bound`.
    pub(crate) fn new(inner: S, bound: impl IntoIterator<Item = Bound>) -> Self {
        let sockets = bound
            .into_iter()
            .filter_map(|b| {
                let key = b.table_key();
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
            Socket::Inherited(fd) => fd.into_raw_fd(),
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
mod tests;
