//! Prometheus metrics and live per-route statistics.
//!
//! One [`Metrics`] per process, shared in an `Arc`, outlives every config reload. It holds two
//! kinds of state:
//!
//! - **Per-route** state in [`RouteMetrics`]: resolved once per (tenant, route) when a config
//!   snapshot is built, then updated on the request path with relaxed atomics only — no lock, no
//!   hashing, no label string. A custom [`Collector`] turns it into the `portcullis_requests_total`,
//!   `portcullis_request_duration_seconds`, `portcullis_denied_total` and
//!   `portcullis_upstream_errors_total` families at scrape time. The same state feeds
//!   [`RouteMetrics::window`], the last-minute view of the admin API and console.
//! - **Process-level** metrics that change rarely (reloads, secrets, audit, build info)
//!   use the `prometheus` crate's own types in a [`Registry`].
//!
//! Labels are bounded: route names, never raw paths or addresses; methods and status codes are
//! folded into fixed tables (see [`RouteMetrics::observe`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use self::route::RouteCollector;
use crate::clock::unix_seconds;

mod route;

pub(crate) use self::route::{Answer, RouteMetrics, UpstreamErrorKind};

#[cfg(test)]
mod tests;
mod tunnels;

pub(crate) use self::tunnels::{TunnelMetrics, TunnelSample};

/// The content type of [`Metrics::encode`]'s output (`text/plain; version=0.0.4`).
pub(crate) const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// (tenant, route).
type RouteKey = (Box<str>, Box<str>);

/// What the connection layer (`conn`) counts: connections open, refused, and cut for being
/// too slow to send a request head. Cheap to clone (each is a shared handle).
#[derive(Clone)]
pub(crate) struct ConnectionMetrics {
    /// `portcullis_active_connections`.
    pub(crate) active: IntGauge,
    /// `portcullis_connections_rejected_total{reason="max_connections"}`.
    pub(crate) rejected_total: IntCounter,
    /// `portcullis_connections_rejected_total{reason="max_connections_per_ip"}`.
    pub(crate) rejected_per_ip: IntCounter,
    /// `portcullis_request_header_timeouts_total`.
    pub(crate) header_timeouts: IntCounter,
    /// `portcullis_malformed_requests_total`.
    pub(crate) malformed_requests: IntCounter,
}

/// The process's metrics: one per process, `Arc`-shared, surviving config reloads.
pub(crate) struct Metrics {
    registry: Registry,
    /// The monotonic origin of every route's live window.
    base: Instant,
    /// The published routes by (tenant, route), so that the same pair gets the same counters
    /// across reloads. Written only off the request path, once per reload.
    by_name: ArcSwap<HashMap<RouteKey, Arc<RouteMetrics>>>,
    /// What the collector exports (besides `unrouted`); shared with it.
    published: Arc<ArcSwap<Vec<Arc<RouteMetrics>>>>,
    unrouted: Arc<RouteMetrics>,
    active_requests: IntGauge,
    reloads_success: IntCounter,
    reloads_error: IntCounter,
    last_reload_success: Gauge,
    config_info: IntGaugeVec,
    secret_present: IntGaugeVec,
    secret_expiry: GaugeVec,
    audit_dropped: IntCounter,
    audit_written: IntCounter,
    tunnels: TunnelMetrics,
    connections: ConnectionMetrics,
    admin_connections: ConnectionMetrics,
}

// === impl Metrics ===

impl Metrics {
    /// A fresh set of metrics for a process running `version`; sets `portcullis_build_info` and
    /// `portcullis_process_start_time_seconds`.
    pub(crate) fn new(version: &str) -> Arc<Metrics> {
        Arc::new(Self::with_base(version, Instant::now()))
    }

    /// As [`Metrics::new`], with the live window's time origin given (tests pass synthetic
    /// instants relative to it).
    fn with_base(version: &str, base: Instant) -> Metrics {
        let registry = Registry::new();
        let unrouted = Arc::new(RouteMetrics::new("", "", base));
        let published = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let collector = RouteCollector::new(Arc::clone(&unrouted), Arc::clone(&published));
        registry
            .register(Box::new(collector))
            .expect("the route collector is registered once in a fresh registry");

        let build_info = register(
            &registry,
            IntGauge::with_opts(
                Opts::new(
                    "portcullis_build_info",
                    "Always 1; the gateway's version as a label.",
                )
                .const_label("version", version),
            ),
        );
        build_info.set(1);
        let start_time = register(
            &registry,
            Gauge::new(
                "portcullis_process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch.",
            ),
        );
        start_time.set(unix_seconds(SystemTime::now()));
        let active_requests = register(
            &registry,
            IntGauge::new(
                "portcullis_active_requests",
                "Requests currently being served.",
            ),
        );
        let reloads = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "portcullis_config_reloads_total",
                    "Configuration reloads attempted, by result.",
                ),
                &["result"],
            ),
        );
        let last_reload_success = register(
            &registry,
            Gauge::new(
                "portcullis_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully, in seconds since the Unix epoch.",
            ),
        );
        let config_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "portcullis_config_info",
                    "Always 1; the hash of the configuration in force as a label.",
                ),
                &["hash"],
            ),
        );
        let secret_present = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "portcullis_secret_present",
                    "1 when the secret is loaded and usable, 0 when missing or undecryptable.",
                ),
                &["tenant", "secret"],
            ),
        );
        let secret_expiry = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "portcullis_secret_expiry_timestamp_seconds",
                    "When the secret expires, in seconds since the Unix epoch (only when known).",
                ),
                &["tenant", "secret"],
            ),
        );
        let audit_dropped = register(
            &registry,
            IntCounter::new(
                "portcullis_audit_dropped_total",
                "Audit lines dropped because the writer could not keep up.",
            ),
        );
        let audit_written = register(
            &registry,
            IntCounter::new("portcullis_audit_lines_total", "Audit lines written."),
        );
        let tunnels = TunnelMetrics::register(&registry);
        let active_connections = register(
            &registry,
            IntGauge::new(
                "portcullis_active_connections",
                "Connections open on the public listeners (TLS handshakes included).",
            ),
        );
        let rejected = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "portcullis_connections_rejected_total",
                    "Connections closed at accept, before TLS, by the limit they would exceed.",
                ),
                &["reason"],
            ),
        );
        let header_timeouts = register(
            &registry,
            IntCounter::new(
                "portcullis_request_header_timeouts_total",
                "Connections closed because a request line and headers did not arrive within server.request_header_timeout_ms.",
            ),
        );
        let malformed_requests = register(
            &registry,
            IntCounter::new(
                "portcullis_malformed_requests_total",
                "Request heads refused with 400 bad_request before any route was looked up (framing, header syntax, a Host that contradicts the request target).",
            ),
        );
        let admin_active_connections = register(
            &registry,
            IntGauge::new(
                "portcullis_admin_active_connections",
                "Connections open on the admin listener.",
            ),
        );
        // Every reason exists from the start, so `increase()` sees the first rejection.
        let rejected_per_ip = rejected.with_label_values(&["max_connections_per_ip"]);
        let admin_connections = ConnectionMetrics {
            active: admin_active_connections,
            rejected_total: rejected.with_label_values(&["admin_max_connections"]),
            // The admin listener has no per-address limit: never counted.
            rejected_per_ip: rejected_per_ip.clone(),
            header_timeouts: header_timeouts.clone(),
            malformed_requests: malformed_requests.clone(),
        };
        let connections = ConnectionMetrics {
            active: active_connections,
            rejected_total: rejected.with_label_values(&["max_connections"]),
            rejected_per_ip,
            header_timeouts,
            malformed_requests,
        };

        Metrics {
            registry,
            base,
            by_name: ArcSwap::from_pointee(HashMap::new()),
            published,
            unrouted,
            active_requests,
            // Both results exist from the start, so `increase()` sees the first error.
            reloads_success: reloads.with_label_values(&["success"]),
            reloads_error: reloads.with_label_values(&["error"]),
            last_reload_success,
            config_info,
            secret_present,
            secret_expiry,
            audit_dropped,
            audit_written,
            tunnels,
            connections,
            admin_connections,
        }
    }

    /// The metrics of each (tenant, route) pair: the ones published last time for pairs seen
    /// before (so counters survive reloads), new ones for the rest.
    ///
    /// Call it off the request path, when a runtime is built; it reads the published map once
    /// and changes nothing, so building a runtime costs O(routes) however many there are. A
    /// pair left out of the next [`Metrics::publish_routes`] is forgotten; if it is configured
    /// again later its counters start from zero (a counter reset, which Prometheus' `rate()`
    /// handles). `("", "")` is [`Metrics::unrouted`].
    pub(crate) fn resolve_routes<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<Arc<RouteMetrics>> {
        let current = self.by_name.load();
        pairs
            .into_iter()
            .map(|(tenant, route)| {
                if tenant.is_empty() && route.is_empty() {
                    return Arc::clone(&self.unrouted);
                }
                match current.get(&(Box::from(tenant), Box::from(route))) {
                    Some(found) => Arc::clone(found),
                    None => Arc::new(RouteMetrics::new(tenant, route, self.base)),
                }
            })
            .collect()
    }

    /// The metrics of requests that matched no route (tenant `""`, route `""`); always exported.
    pub(crate) fn unrouted(&self) -> &Arc<RouteMetrics> {
        &self.unrouted
    }

    /// Makes `routes` the set the exporter reports, besides [`Metrics::unrouted`].
    ///
    /// Call it after each successful reload with the new snapshot's routes: routes no longer
    /// configured stop being exported. Duplicates (by tenant and route) are exported once.
    /// Meant to be called by one reload at a time.
    pub(crate) fn publish_routes(&self, routes: Vec<Arc<RouteMetrics>>) {
        let mut seen = HashSet::new();
        let mut by_name = HashMap::with_capacity(routes.len());
        let mut published = Vec::with_capacity(routes.len());
        for route in routes {
            if route.tenant().is_empty() && route.route().is_empty() {
                continue;
            }
            let key: RouteKey = (route.tenant().into(), route.route().into());
            if seen.insert(key.clone()) {
                by_name.insert(key, Arc::clone(&route));
                published.push(route);
            }
        }
        self.published.store(Arc::new(published));
        self.by_name.store(Arc::new(by_name));
    }

    /// Everything, in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let families = self.registry.gather();
        let mut out = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&families, &mut out) {
            // Only malformed families fail; everything here is built from constants.
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }

    /// `portcullis_active_requests`: increment when a request starts, decrement when it ends.
    pub(crate) fn active_requests(&self) -> &IntGauge {
        &self.active_requests
    }

    /// Records a reload attempt (the initial load counts as one).
    ///
    /// Counts `portcullis_config_reloads_total{result="success"|"error"}`. On success also sets
    /// `portcullis_config_last_reload_success_timestamp_seconds` to `at` and makes `config_hash`
    /// the only series of `portcullis_config_info`; on error the previous hash stays, as the
    /// previous config stays in force.
    pub(crate) fn record_reload(&self, ok: bool, config_hash: &str, at: SystemTime) {
        if !ok {
            self.reloads_error.inc();
            return;
        }
        self.reloads_success.inc();
        self.last_reload_success.set(unix_seconds(at));
        for stale in label_values(&self.config_info, &["hash"]) {
            if stale[0] != config_hash {
                let _ = self.config_info.remove_label_values(&[&stale[0]]);
            }
        }
        self.config_info.with_label_values(&[config_hash]).set(1);
    }

    /// Sets `portcullis_secret_present{tenant,secret}` and, when `expiry` is known,
    /// `portcullis_secret_expiry_timestamp_seconds{tenant,secret}` (removed when it is not).
    pub(crate) fn set_secret(
        &self,
        tenant: &str,
        secret: &str,
        present: bool,
        expiry: Option<SystemTime>,
    ) {
        self.secret_present
            .with_label_values(&[tenant, secret])
            .set(i64::from(present));
        match expiry {
            Some(at) => self
                .secret_expiry
                .with_label_values(&[tenant, secret])
                .set(unix_seconds(at)),
            None => {
                let _ = self.secret_expiry.remove_label_values(&[tenant, secret]);
            }
        }
    }

    /// Drops the series of every secret not in `current` (pairs of tenant and secret name).
    pub(crate) fn retain_secrets(&self, current: &[(String, String)]) {
        let keep: HashSet<(&str, &str)> = current
            .iter()
            .map(|(tenant, secret)| (tenant.as_str(), secret.as_str()))
            .collect();
        let labels = ["tenant", "secret"];
        for [tenant, secret] in label_values(&self.secret_present, &labels) {
            if !keep.contains(&(tenant.as_str(), secret.as_str())) {
                let _ = self.secret_present.remove_label_values(&[&tenant, &secret]);
            }
        }
        for [tenant, secret] in label_values(&self.secret_expiry, &labels) {
            if !keep.contains(&(tenant.as_str(), secret.as_str())) {
                let _ = self.secret_expiry.remove_label_values(&[&tenant, &secret]);
            }
        }
    }

    /// `portcullis_audit_dropped_total`: audit lines lost because the writer fell behind.
    pub(crate) fn audit_dropped(&self) -> &IntCounter {
        &self.audit_dropped
    }

    /// `portcullis_audit_lines_total`: audit lines written.
    pub(crate) fn audit_written(&self) -> &IntCounter {
        &self.audit_written
    }

    /// The broker tunnel families (`portcullis_tunnel_*`, `portcullis_tcp_route_*`).
    pub(crate) fn tunnels(&self) -> &TunnelMetrics {
        &self.tunnels
    }

    /// The connection layer's metrics.
    pub(crate) fn connections(&self) -> &ConnectionMetrics {
        &self.connections
    }

    /// The admin listener's connection gauge and refusals (`reason="admin_max_connections"`).
    pub(crate) fn admin_connections(&self) -> &ConnectionMetrics {
        &self.admin_connections
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("published_routes", &self.published.load().len())
            .finish_non_exhaustive()
    }
}

/// Registers a clone of a process-level metric and returns it.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<C>,
) -> C {
    let metric = metric.expect("metric names, help and labels are valid constants");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once in a fresh registry");
    metric
}

/// The values of labels `names` of every series a metric vector currently holds.
fn label_values<const N: usize>(collector: &dyn Collector, names: &[&str; N]) -> Vec<[String; N]> {
    collector
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| {
            names.map(|name| {
                metric
                    .get_label()
                    .iter()
                    .find(|pair| pair.name() == name)
                    .map(|pair| pair.value().to_owned())
                    .unwrap_or_default()
            })
        })
        .collect()
}
