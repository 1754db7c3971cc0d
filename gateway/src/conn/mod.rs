//! Downstream connections below HTTP: how many may be open, how long a client gets to send a
//! request head, and what a graceful stop waits for.
//!
//! Pingora 0.9 serves the sockets and bounds each *read* (60 s), but not the time to receive a
//! whole request head, the number of connections, or the connections one client holds, so a
//! slowloris (a byte every few seconds) or one greedy client can hold every descriptor. This
//! module adds those bounds without replacing any of Pingora's own machinery (its buffered L4
//! streams, TLS, HTTP/1 and HTTP/2 code):
//!
//! - [`ConnectionLimiter`] counts open connections, in total and per client address (an IPv6
//!   /64 counts as one address). Pingora's `ConnectionFilter` hook rejects in the accept loop
//!   (before a task or a TLS handshake exists); the count itself is taken by a guard whose
//!   lifetime is the socket's — attached before the TLS handshake (`PreTlsProcess`, as the L4
//!   stream's tracer) on TLS listeners, and by [`Guarded`] on plain ones — so a connection is
//!   counted exactly while it is open, whatever path closes it.
//! - [`Guarded`] wraps the proxy's `ServerApp` and puts each connection's stream in a
//!   [`GuardedStream`], which enforces the *total* request-head deadline: from the accept for
//!   a connection's first request (TLS handshake included), from the first byte for each later
//!   one on a keep-alive connection. The proxy tells the stream when a head has been parsed and
//!   when the request is over (`head_received`, `request_done`), through Pingora's public
//!   `ServerSession::stream()` and `IO::as_any`. Outside a head the wrapper is one relaxed
//!   atomic load per read; idle keep-alive connections are left to Pingora's keep-alive timer.
//! - [`ConnStats`] holds the counts [`Guarded::cleanup`] and the shutdown order read: a stop
//!   must not cut a connection that was accepted but whose first request has not arrived yet.
//!
//! Why not a timeout around the proxy's `process_new_http` instead: it would bound the whole
//! request (body, upstream, response), not the head, and cancelling it drops the socket with
//! no chance to answer 408. Why not Pingora's `read_timeout`: it bounds each read, so a byte
//! every 59 s keeps a connection forever.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

mod app;
mod limits;
mod stream;

pub(crate) use self::app::Guarded;
pub(crate) use self::limits::{ConnectionLimiter, Listener};
pub(crate) use self::stream::GuardedStream;

/// Counts shared by the limiter, the streams and the shutdown order. All per connection, none
/// per request.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Connections the accept-loop filter let through.
    accepted: AtomicU64,
    /// Connections that reached the limiter's count (admitted or refused there).
    registered: AtomicU64,
    /// Connections currently counted by the limiter (open sockets).
    open: AtomicUsize,
    /// Connections currently wrapped in a [`GuardedStream`] (past the TLS handshake).
    wrapped: AtomicUsize,
    /// Wrapped connections whose first request head has not been received yet.
    fresh: AtomicUsize,
}

// === impl ConnStats ===

impl ConnStats {
    /// Connections open on the public listeners (TLS handshakes included).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections that were accepted but have not delivered their first request head: still
    /// between the accept loop and the limiter, in the TLS handshake, or waiting for the head.
    /// A stop waits for these (bounded by the head deadline) before closing idle connections.
    pub(crate) fn unsettled(&self) -> usize {
        let accepted = self.accepted.load(Ordering::Acquire);
        let registered = self.registered.load(Ordering::Acquire);
        let open = self.open.load(Ordering::Acquire);
        let wrapped = self.wrapped.load(Ordering::Acquire);
        let fresh = self.fresh.load(Ordering::Acquire);
        let before_limiter = accepted.saturating_sub(registered) as usize;
        let handshaking = open.saturating_sub(wrapped);
        before_limiter + handshaking + fresh
    }
}

#[cfg(test)]
mod tests;
