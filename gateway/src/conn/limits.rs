//! `[server] max_connections` and `max_connections_per_ip`, enforced before TLS.
//!
//! Two checks, one count. The accept loop asks [`ConnectionLimiter::should_accept`] (Pingora's
//! `ConnectionFilter`), which only *reads* the counts: a refused connection is closed there,
//! before a task is spawned or a TLS byte is read. The count is then *taken* by
//! [`ConnectionLimiter::admit`], atomically (a burst of accepts cannot overshoot the limit),
//! which returns a [`ConnectionGuard`] that gives the count back when dropped. The guard lives
//! as long as the socket: on TLS listeners it is the L4 stream's tracer, attached before the
//! handshake ([`PreTlsProcess`]); on plain listeners [`super::Guarded`] keeps it next to the
//! stream. No path that closes a connection can forget to give its count back.
//!
//! Limits are read from the runtime at each accept, so a reload changes them for new
//! connections. An IPv6 client is counted by its /64 (one host usually owns a whole /64); an
//! IPv4-mapped IPv6 address counts as the IPv4 address.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::listeners::{ConnectionFilter, PreTlsProcess};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::GetSocketDigest;
use pingora::upstreams::peer::{Tracer, Tracing};
use pingora::{Error, ErrorType};

use super::ConnStats;
use crate::observe::metrics::ConnectionMetrics;
use crate::runtime::SharedRuntime;

/// Counts downstream connections and refuses those over a limit. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ConnectionLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    listener: Listener,
    runtime: SharedRuntime,
    /// Open connections per client key (see [`client_key`]); entries at zero are removed.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    stats: Arc<ConnStats>,
    metrics: ConnectionMetrics,
}

/// Which listeners a limiter counts, and so which limits it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The public listeners: `server.max_connections` and `server.max_connections_per_ip`.
    Public,
    /// The admin listener: `admin.max_connections`, no per-address limit (it is reached by
    /// operators, the console and scrapers, often all from one address).
    Admin,
}

/// Which limit a connection would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `server.max_connections`.
    Total,
    /// `server.max_connections_per_ip`.
    PerIp,
}

/// One open connection in the limiter's counts, given back when dropped.
pub(crate) struct ConnectionGuard {
    shared: Arc<Shared>,
    key: Option<IpAddr>,
}

/// The L4 stream's tracer on TLS listeners: owns the connection's guard, so the count is
/// given back when the socket is dropped, handshake failure included.
struct GuardTracer(ConnectionGuard);

/// What a clone of [`GuardTracer`] is: nothing (a guard must be given back once).
#[derive(Debug)]
struct NoTracer;

// === impl ConnectionLimiter ===

impl ConnectionLimiter {
    /// A limiter for `listener`'s connections, reading its limits from `runtime`, counting
    /// into `stats` and `metrics`.
    pub(crate) fn new(
        listener: Listener,
        runtime: SharedRuntime,
        stats: Arc<ConnStats>,
        metrics: ConnectionMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                listener,
                runtime,
                per_ip: Mutex::new(HashMap::new()),
                stats,
                metrics,
            }),
        }
    }

    /// Takes a place for a connection from `peer`, or says which limit it would exceed.
    pub(crate) fn admit(&self, peer: Option<IpAddr>) -> Result<ConnectionGuard, Refusal> {
        let shared = &self.shared;
        shared.stats.registered.fetch_add(1, Ordering::AcqRel);
        let (max, per_ip) = shared.limits();
        if shared.stats.open.fetch_add(1, Ordering::AcqRel) >= max {
            shared.stats.open.fetch_sub(1, Ordering::AcqRel);
            return Err(shared.refused(Refusal::Total));
        }
        let key = peer.map(client_key);
        if let Some(key) = key {
            let mut counts = shared.per_ip.lock();
            let count = counts.entry(key).or_insert(0);
            if per_ip.is_some_and(|limit| *count >= limit) {
                if *count == 0 {
                    counts.remove(&key);
                }
                drop(counts);
                shared.stats.open.fetch_sub(1, Ordering::AcqRel);
                return Err(shared.refused(Refusal::PerIp));
            }
            *count += 1;
        }
        shared.metrics.active.inc();
        Ok(ConnectionGuard {
            shared: Arc::clone(shared),
            key,
        })
    }

    /// Whether a connection from `peer` would be admitted now, without taking a place.
    fn would_admit(&self, peer: Option<IpAddr>) -> Result<(), Refusal> {
        let shared = &self.shared;
        let (max, per_ip) = shared.limits();
        if shared.stats.open.load(Ordering::Acquire) >= max {
            return Err(Refusal::Total);
        }
        if let (Some(limit), Some(peer)) = (per_ip, peer) {
            let count = shared
                .per_ip
                .lock()
                .get(&client_key(peer))
                .copied()
                .unwrap_or(0);
            if count >= limit {
                return Err(Refusal::PerIp);
            }
        }
        Ok(())
    }

    /// Connections currently open from `peer`'s client key.
    #[cfg(test)]
    fn open_from(&self, peer: IpAddr) -> usize {
        self.shared
            .per_ip
            .lock()
            .get(&client_key(peer))
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl ConnectionFilter for ConnectionLimiter {
    async fn should_accept(&self, addr: Option<&SocketAddr>) -> bool {
        match self.would_admit(addr.map(SocketAddr::ip)) {
            Ok(()) => {
                self.shared.stats.accepted.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(refusal) => {
                self.shared.refused(refusal);
                false
            }
        }
    }
}

#[async_trait]
impl PreTlsProcess for ConnectionLimiter {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(SocketAddr::ip));
        match self.admit(peer) {
            Ok(guard) => {
                stream.tracer = Some(Tracer(Box::new(GuardTracer(guard))));
                Ok(())
            }
            // Pingora drops the connection before the handshake.
            Err(refusal) => Error::e_explain(ErrorType::ConnectRefused, refusal.as_str()),
        }
    }
}

impl fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("open", &self.shared.stats.open())
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl Shared {
    /// `(max_connections, max_connections_per_ip)` of the runtime in force.
    fn limits(&self) -> (usize, Option<usize>) {
        let runtime = self.runtime.load();
        let config = &runtime.config;
        match self.listener {
            Listener::Public => (
                config.server.max_connections,
                config.server.max_connections_per_ip,
            ),
            Listener::Admin => (config.admin.max_connections, None),
        }
    }

    /// Counts a refusal and logs it (at debug: a flood would otherwise flood the log too; the
    /// metric is the signal).
    fn refused(&self, refusal: Refusal) -> Refusal {
        match refusal {
            Refusal::Total => self.metrics.rejected_total.inc(),
            Refusal::PerIp => self.metrics.rejected_per_ip.inc(),
        }
        tracing::debug!(limit = refusal.as_str(), "connection refused");
        refusal
    }
}

// === impl Refusal ===

impl Refusal {
    /// The config key of the limit, also the metric's `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

// === impl ConnectionGuard ===

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut counts = self.shared.per_ip.lock();
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
        self.shared.stats.open.fetch_sub(1, Ordering::AcqRel);
        self.shared.metrics.active.dec();
    }
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("key", &self.key)
            .finish()
    }
}

// === impl GuardTracer ===

impl Tracing for GuardTracer {
    fn on_connected(&self) {}

    fn on_disconnected(&self) {}

    fn boxed_clone(&self) -> Box<dyn Tracing> {
        Box::new(NoTracer)
    }
}

impl fmt::Debug for GuardTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// === impl NoTracer ===

impl Tracing for NoTracer {
    fn on_connected(&self) {}

    fn on_disconnected(&self) {}

    fn boxed_clone(&self) -> Box<dyn Tracing> {
        Box::new(NoTracer)
    }
}

/// The address a connection is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by
/// its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn limiter_for_tests(
        runtime: SharedRuntime,
    ) -> (ConnectionLimiter, Arc<ConnStats>, ConnectionMetrics) {
        let metrics = crate::observe::metrics::Metrics::new("test")
            .connections()
            .clone();
        let stats = Arc::new(ConnStats::default());
        (
            ConnectionLimiter::new(
                Listener::Public,
                runtime,
                Arc::clone(&stats),
                metrics.clone(),
            ),
            stats,
            metrics,
        )
    }

    #[test]
    fn ipv6_clients_count_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff::1")),
            client_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn guards_take_and_give_back_places_per_client_and_in_total() {
        let runtime = crate::runtime::tests::runtime_with_server(|s| {
            s.max_connections = 3;
            s.max_connections_per_ip = Some(2);
        });
        let (limiter, stats, metrics) = limiter_for_tests(runtime);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let a1 = limiter.admit(Some(a)).unwrap();
        let a2 = limiter.admit(Some(a)).unwrap();
        assert_eq!(limiter.admit(Some(a)).unwrap_err(), Refusal::PerIp);
        assert_eq!(limiter.would_admit(Some(a)), Err(Refusal::PerIp));
        let b1 = limiter.admit(Some("2001:db8::2".parse().unwrap())).unwrap();
        assert_eq!(limiter.open_from(b), 1, "same /64");
        assert_eq!(limiter.admit(None).unwrap_err(), Refusal::Total);
        assert_eq!((stats.open(), metrics.active.get()), (3, 3));
        drop(a1);
        assert_eq!(limiter.open_from(a), 1);
        let unknown = limiter.admit(None).unwrap();
        drop((a2, b1, unknown));
        assert_eq!((stats.open(), metrics.active.get()), (0, 0));
        assert_eq!(limiter.open_from(a), 0);
        assert!(
            limiter.shared.per_ip.lock().is_empty(),
            "no entry is left behind"
        );
        assert_eq!(metrics.rejected_per_ip.get(), 1);
        assert_eq!(metrics.rejected_total.get(), 1);
    }
}
