//! Upstream targets: DNS discovery, round-robin selection with health checks, upstream TLS
//! trust, and the egress addresses connections leave from; and, in [`tunnel`], the customer
//! tunnels that tunnel routes reach their agents through.
//!
//! Routes with the same targets, health check and trust share one [`UpstreamGroup`] — a Pingora
//! `LoadBalancer<RoundRobin>` over the resolved addresses — and a reload hands the groups of
//! unchanged routes to the new runtime as they are. So health marks survive a reload (a dead
//! target does not get traffic again because a route elsewhere in the file changed), a reload
//! resolves DNS only for targets it has not seen, and 10,000 routes to one API are one group.
//!
//! Resolution happens off the request path (when a group is created, then periodically), and
//! the request path connects to exactly the address it checked against the destination guard,
//! so a DNS answer cannot smuggle a private address in between the check and the connect.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::RoundRobin;
use pingora::{Error, ErrorType, Result as PingoraResult};
use portcullis_config::{HealthCheck, Target};

pub(crate) mod egress;
pub(crate) mod fetch;
mod tls;
pub(crate) mod tunnel;

pub(crate) use self::tls::{load_ca_bundle, CaBundle, CaFileError};

/// Which of a group's targets a discovered backend belongs to (stored in `Backend::ext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetIndex(pub(crate) usize);

/// A backend chosen for a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Picked {
    /// The resolved address to connect to.
    pub(crate) addr: SocketAddr,
    /// Which of the group's targets the address was resolved from.
    pub(crate) target: usize,
}

/// What makes the upstream state of two routes interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    targets: Vec<(bool, String, u16)>,
    health_path: Option<String>,
    health_interval: Duration,
    tls_verify: bool,
    /// A hash of the route's CA bundle (0 for the system roots).
    ca: u64,
}

/// A load balancer over the resolved addresses of some targets, shared by every route with
/// the same [`GroupKey`] and carried across reloads.
pub(crate) struct UpstreamGroup {
    key: GroupKey,
    lb: LoadBalancer<RoundRobin>,
    /// When the group was created; health-check times count from here.
    created: Instant,
    /// Milliseconds since `created` when the next health check is due.
    next_check_ms: AtomicU64,
}

/// The groups of one runtime, by key.
#[derive(Default)]
pub(crate) struct UpstreamGroups {
    by_key: HashMap<GroupKey, Arc<UpstreamGroup>>,
}

/// Resolves a group's targets into backends.
#[derive(Debug)]
struct DnsDiscovery {
    targets: Vec<Target>,
}

// === impl GroupKey ===

impl GroupKey {
    /// The key of a route's upstream state.
    pub(crate) fn new(
        targets: &[Target],
        health: &HealthCheck,
        tls_verify: bool,
        ca: Option<&CaBundle>,
    ) -> Self {
        let ca = ca.map_or(0, |certs| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for cert in certs.iter() {
                cert.borrow_raw_cert().hash(&mut h);
            }
            h.finish()
        });
        Self {
            targets: targets
                .iter()
                .map(|t| (t.tls, t.host.clone(), t.port))
                .collect(),
            health_path: health.path.clone(),
            health_interval: health.interval,
            tls_verify,
            ca,
        }
    }
}

// === impl Picked ===

impl Picked {
    /// The address and target of `backend`; `None` for a non-inet address.
    fn of(backend: &Backend) -> Option<Self> {
        Some(Picked {
            addr: *backend.addr.as_inet()?,
            target: backend.ext.get::<TargetIndex>().map_or(0, |t| t.0),
        })
    }
}

// === impl UpstreamGroup ===

impl UpstreamGroup {
    /// A group over `targets`, not resolved yet (see [`UpstreamGroup::resolve`]).
    fn new(
        key: GroupKey,
        targets: &[Target],
        health: &HealthCheck,
        tls_verify: bool,
        ca: Option<&CaBundle>,
    ) -> Self {
        let backends = Backends::new(Box::new(DnsDiscovery {
            targets: targets.to_vec(),
        }));
        let mut lb = LoadBalancer::from_backends(backends);
        if let Some(first) = targets.first() {
            match &health.path {
                Some(path) => {
                    let authority = first.authority.to_str().unwrap_or(&first.host);
                    let mut hc = HttpHealthCheck::new(authority, first.tls);
                    if let Ok(uri) = path.parse::<http::Uri>() {
                        hc.req.set_uri(uri);
                    }
                    hc.peer_template.options.verify_cert = tls_verify;
                    hc.peer_template.options.ca = ca.cloned();
                    hc.peer_template.sni = first.host.clone();
                    lb.set_health_check(Box::new(hc));
                }
                None => lb.set_health_check(TcpHealthCheck::new()),
            }
            lb.health_check_frequency = Some(health.interval);
        }
        Self {
            key,
            lb,
            created: Instant::now(),
            next_check_ms: AtomicU64::new(0),
        }
    }

    /// Resolves the targets (DNS). Until the first success the group has no backend and the
    /// route answers 502; failures keep the previous addresses.
    pub(crate) async fn resolve(&self) {
        if let Err(e) = self.lb.update().await {
            let targets: Vec<String> = self
                .key
                .targets
                .iter()
                .map(|(_, h, p)| format!("{h}:{p}"))
                .collect();
            tracing::warn!(?targets, error = %e, "target discovery failed; keeping the previous addresses");
        }
    }

    /// The address the next connection attempt goes to, and the target it belongs to:
    /// round-robin among the healthy backends, or the only one there is.
    ///
    /// A lone backend is returned whatever its health mark: with nothing to fail over to, the
    /// real connection attempt gives the caller the precise error (refused, timeout), as
    /// [`UpstreamGroup::check_health_if_due`] intends, and a mark left from when there were more
    /// addresses cannot strand the route (a group of one target is never checked again). It is
    /// also the common case, and skips the load balancer's per-pick hashing and `Backend` clone.
    pub(crate) fn select(&self) -> Option<Picked> {
        let backends = self.lb.backends().get_backend();
        if backends.len() == 1 {
            return backends.first().and_then(Picked::of);
        }
        drop(backends);
        self.lb.select(b"", 64).as_ref().and_then(Picked::of)
    }

    /// Every resolved address with its health.
    pub(crate) fn backends(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| b.addr.as_inet().map(|addr| (*addr, backends.ready(b))))
            .collect()
    }

    /// Runs the health check if it is due and pays off: only when there is another address to
    /// fail over to. With one, the real connection attempt gives the caller the precise error
    /// (refused, timeout) instead of "no healthy target".
    pub(crate) async fn check_health_if_due(&self) {
        let Some(interval) = self.lb.health_check_frequency else {
            return;
        };
        if self.key.targets.len() < 2 && self.lb.backends().get_backend().len() < 2 {
            return;
        }
        let now_ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.next_check_ms.load(Ordering::Relaxed) > now_ms {
            return;
        }
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.next_check_ms
            .store(now_ms.saturating_add(interval_ms), Ordering::Relaxed);
        self.lb.backends().run_health_check(true).await;
    }
}

impl std::fmt::Debug for UpstreamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamGroup")
            .field("targets", &self.key.targets)
            .field("backends", &self.lb.backends().get_backend().len())
            .finish_non_exhaustive()
    }
}

// === impl UpstreamGroups ===

impl UpstreamGroups {
    /// The group for `key`: this runtime's if another route made it, the previous runtime's
    /// if it had one (health and addresses carried over), else a new, unresolved one, which is
    /// also returned in `created`.
    pub(crate) fn get_or_create(
        &mut self,
        key: GroupKey,
        previous: Option<&UpstreamGroups>,
        created: &mut Vec<Arc<UpstreamGroup>>,
        spec: UpstreamGroupSpec<'_>,
    ) -> Arc<UpstreamGroup> {
        if let Some(group) = self.by_key.get(&key) {
            return Arc::clone(group);
        }
        let group = match previous.and_then(|p| p.by_key.get(&key)) {
            Some(kept) => Arc::clone(kept),
            None => {
                let group = Arc::new(UpstreamGroup::new(
                    key.clone(),
                    spec.targets,
                    spec.health,
                    spec.tls_verify,
                    spec.ca,
                ));
                created.push(Arc::clone(&group));
                group
            }
        };
        self.by_key.insert(key, Arc::clone(&group));
        group
    }

    /// Every group, once.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<UpstreamGroup>> {
        self.by_key.values()
    }
}

impl std::fmt::Debug for UpstreamGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamGroups")
            .field("groups", &self.by_key.len())
            .finish()
    }
}

/// What a new group is made of.
pub(crate) struct UpstreamGroupSpec<'a> {
    /// The targets.
    pub(crate) targets: &'a [Target],
    /// The health check.
    pub(crate) health: &'a HealthCheck,
    /// Whether upstream certificates are verified.
    pub(crate) tls_verify: bool,
    /// The route's CA bundle.
    pub(crate) ca: Option<&'a CaBundle>,
}

// === impl DnsDiscovery ===

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> PingoraResult<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        let mut last_error = None;
        for (index, target) in self.targets.iter().enumerate() {
            let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, target.port)],
                Err(_) => {
                    match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                        Ok(addrs) => addrs.collect(),
                        Err(e) => {
                            tracing::warn!(target = %target, error = %e, "cannot resolve upstream target");
                            last_error = Some(e);
                            continue;
                        }
                    }
                }
            };
            for addr in addrs {
                let mut backend = Backend {
                    addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
                    weight: 1,
                    ext: Default::default(),
                };
                backend.ext.insert(TargetIndex(index));
                backends.insert(backend);
            }
        }
        if backends.is_empty() {
            if let Some(e) = last_error {
                return Err(Error::because(
                    ErrorType::ConnectNoRoute,
                    "no target of the route resolves",
                    e,
                ));
            }
        }
        Ok((backends, HashMap::new()))
    }
}
