//! Recording what happened: the request record, Prometheus metrics, the hash-chained audit log,
//! the traffic ring the console tails, and the access log. This module records and reports; it
//! decides nothing about a request (the proxy does, and hands it a finished record).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod escape;
pub(crate) mod metrics;
pub(crate) mod record;
pub(crate) mod traffic;

/// Where the request path records to: one per process, shared by the proxy and the admin API.
#[derive(Debug)]
pub(crate) struct Recorders {
    /// Prometheus metrics and per-route live statistics.
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// The audit log.
    pub(crate) audit: audit::AuditLog,
    /// Recent requests.
    pub(crate) traffic: traffic::TrafficRing,
    /// Set once a graceful stop begins: a request cut after this is recorded as
    /// `shutdown_cut`, not as an internal error.
    pub(crate) stopping: AtomicBool,
}
